//! The service proxy (our kube-proxy, nftables mode): it turns Services and EndpointSlices into one nftables
//! table per node (`table ip gantry` by default), written with the `nft` binary, one transaction per sync.
//!
//! [`model`] decides, without IO, which endpoints each kind of traffic to a service port may use (kube-proxy's
//! endpoint categories and traffic policies); [`render`] writes the nft text (a flat layout: one DNAT rule per
//! service port); [`nft`] runs `nft`; [`conntrack`] forgets UDP flows whose endpoint is gone; [`proxy`] watches
//! the API and syncs.
//!
//! Invariants: the table is only ever changed by whole transactions, so a failed sync leaves the previous rules
//! in place; nothing is written before the first complete list of Services and EndpointSlices; the proxy
//! touches no table but its own.

pub mod conntrack;
pub mod model;
pub mod nft;
pub mod proxy;
pub mod render;

pub use conntrack::ConntrackCommand;
pub use model::{Cidr, NodeInfo, ServiceKey};
pub use nft::{NftCommand, NftError, remove_rules, remove_rules_with};
pub use proxy::{ProxyConfig, ProxyError, SyncReport, run};
pub use render::DEFAULT_TABLE;
