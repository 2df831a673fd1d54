//! TLS with rustls: listeners (certificates by SNI, resumption, client certificates, reload),
//! upstream connections, and the stream type the proxy's loops run over.

pub mod client;
pub mod identity;
pub mod io;
pub mod reload;
pub mod server;
pub mod stream;
mod ticket;

pub use client::{UpstreamTls, UpstreamTlsSpec};
pub use identity::ClientCert;
pub use io::{ClientIo, Io, OriginIo};
pub use server::{ServerTls, ServerTlsSpec};
