//! How the balancer uses the result cache: which calls may be cached and
//! under which module, and the client's `no-cache` and `x-madrpc-cache`.

use super::Balancer;
use super::cache::CacheKey;
use crate::manifest::ModuleSummary;
use crate::rpc::{CacheHint, CallRequest, RpcError};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Balancer {
    /// Runs `request` through the result cache when its function is
    /// cacheable, straight on the nodes otherwise.
    pub(super) async fn call_through_cache(
        &self,
        request: CallRequest,
        served_by: &mut Option<String>,
    ) -> Result<Bytes, RpcError> {
        let Some(cache) = &self.cache else {
            return self.route(request, served_by).await;
        };
        // Claimed by the client's own call whether cacheable or not, so
        // that its sub-calls, wherever they run, never answer for it.
        let claim = CacheHint::claim();
        let Some((module, ttl_ms)) = self.cacheable(&request.method, request.budget.module) else {
            return self.route(request, served_by).await;
        };
        let key = CacheKey::new(&module, &request.method, &request.params);
        let bypass = claim.as_ref().is_some_and(|claim| claim.bypass);
        let (outcome, how) = cache
            .get_or_run(key, Duration::from_millis(ttl_ms), bypass, || {
                self.route(request, served_by)
            })
            .await;
        if let Some(claim) = claim {
            claim.record(how);
        }
        outcome
    }

    /// The cacheable methods of the nodes' modules and their time to live
    /// in milliseconds; none when the cache is off.
    pub(super) fn cacheable_methods(&self) -> BTreeMap<String, u64> {
        if self.cache.is_none() {
            return BTreeMap::new();
        }
        if let Some(version) = self.deployments.current() {
            return version.summary.cache.clone();
        }
        let mut cached = BTreeMap::new();
        for module in self.registry.nodes().iter().filter_map(|n| n.module()) {
            cached.extend(module.cache.iter().map(|(m, ttl)| (m.clone(), *ttl)));
        }
        cached
    }

    /// The module hash and time to live under which `method`'s results
    /// are cached: when every node that can take it runs the same module
    /// (by hash) and that module registered it with `{ cache }`. While
    /// nodes disagree (in the middle of a deploy), or one did not say what
    /// it runs, nothing is cached, so a result is never served for a
    /// module other than the one that computed it. A call pinned to a
    /// deployed version is cached under that version, which every node it
    /// may go to runs.
    fn cacheable(
        &self,
        method: &str,
        version: Option<crate::modules::ModuleId>,
    ) -> Option<(String, u64)> {
        if let Some(id) = version {
            let version = self.deployments.version(id)?;
            let ttl_ms = *version.summary.cache.get(method)?;
            return Some((version.summary.hash.clone(), ttl_ms));
        }
        let now = Instant::now();
        let mut found: Option<Arc<ModuleSummary>> = None;
        for node in self
            .registry
            .nodes()
            .iter()
            .filter(|n| n.can_take(method, None, now))
        {
            let module = node.module()?;
            match &found {
                Some(first) if first.hash != module.hash => return None,
                Some(_) => {}
                None => found = Some(module),
            }
        }
        let module = found?;
        let ttl_ms = *module.cache.get(method)?;
        Some((module.hash.clone(), ttl_ms))
    }
}
