//! The store conformance suite on a real etcd: each test gets its own single-member etcd process (compaction is
//! cluster-wide, so sharing one would let tests disturb each other).

use std::sync::Arc;

use gantry_store::etcd::{EtcdConfig, EtcdStore};
use gantry_store::testing::TestStore;
use gantry_store::testing::etcd_server::EtcdServer;

async fn etcd_store() -> TestStore {
    let server = EtcdServer::start().await.expect("start etcd (Debian package etcd-server)");
    // A prefix, as in production: the backend must hide it completely.
    let config = EtcdConfig::new([server.endpoint()], b"/gantry-test".to_vec());
    let store = EtcdStore::connect(config).await.expect("connect to etcd");
    TestStore { store: Arc::new(store), guard: Box::new(server) }
}

gantry_store::conformance_tests!(etcd_store());
