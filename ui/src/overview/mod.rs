//! The overview (default page): every endpoint by cloud and region with its breaker
//! state, the reason and the live signals; operator overrides; the incident timeline.

mod endpoint_card;
mod override_control;
mod overview_page;
mod timeline;

pub use endpoint_card::EndpointCard;
pub use overview_page::OverviewPage;
pub use timeline::Timeline;
