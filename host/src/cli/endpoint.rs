//! Command-line flags for the JSON-RPC endpoint limits.

use clap::Args;
use madrpc::rpc::EndpointLimits;

/// Body and batch limit flags; each defaults to [`EndpointLimits::default`].
#[derive(Debug, Clone, Args)]
pub struct EndpointArgs {
    /// Largest request body, e.g. 8MiB.
    #[arg(long, value_name = "SIZE")]
    pub max_body: Option<bytesize::ByteSize>,
    /// Most entries in one JSON-RPC batch.
    #[arg(long, value_name = "N")]
    pub max_batch: Option<usize>,
    /// Most bytes of results in one batch response, e.g. 64MiB; entries
    /// past it get a -32007 error.
    #[arg(long, value_name = "SIZE")]
    pub max_response: Option<bytesize::ByteSize>,
}

impl EndpointArgs {
    /// The defaults with the given flags applied.
    pub fn to_limits(&self) -> EndpointLimits {
        let defaults = EndpointLimits::default();
        EndpointLimits {
            max_body_bytes: self
                .max_body
                .map(|s| usize::try_from(s.as_u64()).unwrap_or(usize::MAX))
                .unwrap_or(defaults.max_body_bytes),
            max_batch: self.max_batch.unwrap_or(defaults.max_batch),
            max_response_bytes: self
                .max_response
                .map(|s| usize::try_from(s.as_u64()).unwrap_or(usize::MAX))
                .unwrap_or(defaults.max_response_bytes),
        }
    }
}
