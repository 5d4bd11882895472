-- wrk script: POST /api/chat/send as one user, to user 2.
-- TOKEN must hold a bearer token (chat-server token --user 1).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("TOKEN") or "")
wrk.body = '{"receiver_id":2,"message":"a message of ordinary length, about sixty characters"}'
