//! The Postgres store runs the shared conformance suite, each case in a fresh schema
//! of the database at `CHAT_TEST_POSTGRES_URL`.

mod common;

mod postgres {
    chat_core::message_repository_suite!(super::common::fixture());
}

mod jobs {
    chat_core::job_store_suite!(super::common::fixture());
}

mod message_jobs {
    chat_core::message_jobs_suite!(super::common::fixture());
}
