//! The nodes of a cluster: id, incarnation, holder, lease, and who adopted a dead one's
//! work; a single node says so.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::Signed;
use super::page::{layout, table, time_text};
use crate::server::state::AppState;

pub async fn page(State(state): State<Arc<AppState>>, signed: Signed) -> Response {
    let body = match state.host.cluster() {
        None => html! {
            p { "This server keeps its decisions in a local file: it is a single node, "
                code { (state.host.config().node.to_string()) } ". Set " code { "[decision_log] url" } " to run a cluster." }
        },
        Some(cluster) => match cluster.nodes().await {
            Err(err) => html! {
                div.notice.bad role="alert" { p { "Cannot read the node table of the " (cluster.describe()) ": " (err) } }
            },
            Ok(nodes) => html! {
                p { "This node: " code { (cluster.node().to_string()) } ". Leases are judged by the decision database's clock." }
                (table("", None, &["Node", "Incarnation", "Holder", "State", "Lease", "Lease until", "Heartbeat", "Adopted by", "Version"], html! { @for n in &nodes {
                                tr {
                                    td { code { (n.node) } }
                                    td { (n.incarnation) }
                                    td { (n.host) }
                                    td { (n.state) }
                                    td { @if n.live { span.badge.ok { "live" } } @else { span.badge.bad { "lapsed" } } }
                                    td { (time_text(&n.lease_until)) }
                                    td { (time_text(&n.heartbeat_at)) }
                                    td { @if let Some(by) = &n.adopted_by { (by) @if let Some(until) = &n.adopted_until { " until " (time_text(until)) } } @else { "—" } }
                                    td { (n.version) }
                                }
                            } }))
            },
        },
    };
    layout("Nodes", "/console/nodes", Some(&signed.session), body).into_response()
}
