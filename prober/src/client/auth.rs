//! Registry auth: WWW-Authenticate challenges, bearer token responses and their cache,
//! and credentials from a Docker config.json.
