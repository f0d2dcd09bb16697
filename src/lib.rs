//! live-migration-guard: predicts, at `kubectl apply` time, whether HyperShift's KubeVirt
//! node VMs will be live migratable, and serves that prediction as a validating admission
//! webhook, an HTTP endpoint and a CLI.

pub mod admission;
pub mod audit;
pub mod batch;
pub mod cdi;
pub mod certs;
pub mod cli;
pub mod evaluate;
pub mod facts;
pub mod live;
pub mod logwriter;
pub mod render;
pub mod resources;
pub mod server;
pub mod simulate;
