//! The status page, one more sink of finished runs: `History` keeps the recent runs per target
//! (history.rs), a snapshot of it is plain data (views.rs), shown as HTML (html.rs) or JSON.
//! The server only reads snapshots.

mod history;
mod html;
mod views;

pub(crate) use history::History;
pub(crate) use html::render_html;
pub(crate) use views::render_json;

#[cfg(test)]
mod tests;
