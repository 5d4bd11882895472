//! The HTTP routes, one module per resource.

pub(crate) mod blocks;
pub(crate) mod conversations;
pub(crate) mod messages;
pub(crate) mod presence;
pub(crate) mod pusher;
pub(crate) mod system;
pub(crate) mod ws;

/// `path?query` with `query` built from `pairs`, for pagination links.
pub(crate) fn link(path: &str, pairs: &[(&str, String)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        query.append_pair(key, value);
    }
    format!("{path}?{}", query.finish())
}
