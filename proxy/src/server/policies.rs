//! A request whose route has policies: run the inbound section, then answer, serve from the
//! cache, or forward with the exchange (which runs the outbound section), and settle.
//!
//! Requests without policies never come here; their path is unchanged. An API route that
//! checks subscription keys always comes here: the check runs first and picks the pipeline
//! of the product the key was admitted under.

use std::rc::Rc;
use std::time::Instant;

use super::conn::{Conn, Facts, HeadView, Next};
use super::forward::PolicyRun;
use super::local::{self, Local};
use crate::policy::auth::keys::Denial;
use crate::policy::run::{Ctx, Exchange, Inbound, Refusal};
use crate::policy::Pipeline;
use crate::route::{Action, HeaderLookup, Route};

/// How often a miss waiting for another core's fetch looks at it.
const NODE_FLIGHT_POLL: std::time::Duration = std::time::Duration::from_millis(2);

impl Conn {
    pub(super) async fn with_policies(
        &mut self,
        head_len: usize,
        facts: Facts,
        route: &Route,
        prefix_len: usize,
        pipeline: usize,
    ) -> (Next, u16) {
        let g = Rc::clone(&self.gen);
        let snap = &*g.snapshot;
        let mut pipe = &snap.config.pipelines[pipeline];
        let mut ex = self.exchange.take().unwrap_or_default();
        let now = Instant::now();
        let (admitted, preflight) = {
            let ctx = self.policy_ctx(route, now);
            ex.begin(snap.config.vars.len(), &ctx);
            let keys = &snap.config.keys;
            let api = &route.api;
            let admitted = (route.keys.as_ref())
                .map(|k| k.admit(keys, api, &ctx.headers, ctx.query, pipeline));
            let preflight = ctx.method == b"OPTIONS"
                && ctx.headers.get(b"origin").is_some()
                && ctx.headers.get(b"access-control-request-method").is_some();
            (admitted, preflight)
        };
        if route.preflights_only && !preflight {
            // APIM's 404 for a request that matches no operation; only preflights go on.
            if let Action::Respond(d) = &route.action {
                self.exchange = Some(ex);
                let answer = Local::Direct(d, &route.response_headers);
                return local::answer(self, head_len, facts, answer, None).await;
            }
        }
        // Browsers never send a key with a CORS preflight: one without a key goes on to the
        // inbound section for `cors` to answer, and is refused below if nothing answers it.
        let mut keyless_preflight = false;
        match admitted {
            None => {}
            Some(Err(Denial::Missing)) if preflight => keyless_preflight = true,
            Some(Ok(a)) => {
                // The product's pipeline (global → product → API → operation), and who the
                // request is for templates; the key itself is never copied.
                pipe = &snap.config.pipelines[a.pipeline];
                if let Some(s) = a.subscription {
                    let id = &snap.config.keys.subscription(s).id;
                    ex.subscription.extend_from_slice(id.as_bytes());
                }
                if let Some(p) = a.product {
                    let name = &snap.config.keys.product(p).name;
                    ex.product.extend_from_slice(name.as_bytes());
                }
            }
            Some(Err(denial)) => {
                // Refused before the inbound section, as APIM does; the route's own
                // `on_error` still shapes the answer.
                let (status, message) = (denial.status(), denial.message());
                let (next, status) = self
                    .fail(head_len, facts, route, pipe, &mut ex, status, message, None)
                    .await;
                ex.settle(pipe, &g.policies, status, 0, Instant::now());
                self.exchange = Some(ex);
                return (next, status);
            }
        }
        let mut from = 0;
        let outcome = loop {
            let outcome = {
                let ctx = self.policy_ctx(route, Instant::now());
                ex.inbound(pipe, from, &g.policies, &ctx)
            };
            match outcome {
                Inbound::Wait(waiter, resume) => {
                    // Another request on this core fetches this key: its answer is in the
                    // store when it is done. Waiting is bounded like the fetch itself (the
                    // timer boxed: it is rare, and aligned to 128 bytes).
                    let limit = snap.config.timeouts.upstream_response;
                    let _ = Box::pin(monoio::time::timeout(limit, waiter)).await;
                    from = resume;
                }
                Inbound::WaitNode(flight, resume) => {
                    // Another core fetches this key: poll its flight (a task here cannot be
                    // woken from there), bounded like the fetch itself.
                    let limit = snap.config.timeouts.upstream_response;
                    let started = Instant::now();
                    while !flight.is_done() && started.elapsed() < limit {
                        Box::pin(monoio::time::sleep(NODE_FLIGHT_POLL)).await;
                    }
                    ex.take_filled(&g.policies, &flight, Instant::now());
                    from = resume;
                }
                Inbound::WaitCluster(wait, resume) => {
                    // Boxed: the Redis call's state is rare, and would otherwise set the size
                    // of every request's policy state.
                    Box::pin(ex.cluster_wait(wait, &g.policies)).await;
                    from = resume;
                }
                Inbound::WaitKeys(wait, resume) => {
                    // The key fetcher thread refreshes the token's keys: poll it (it cannot
                    // wake this task), then verify once more with what it found.
                    use crate::policy::auth::jwks::{KID_POLL, KID_WAIT};
                    let started = Instant::now();
                    while !wait.is_done() && started.elapsed() < KID_WAIT {
                        Box::pin(monoio::time::sleep(KID_POLL)).await;
                    }
                    from = resume;
                }
                other => break other,
            }
        };
        let outcome = match outcome {
            Inbound::Continue if keyless_preflight => Inbound::Refuse(Refusal {
                status: Denial::Missing.status(),
                message: Denial::Missing.message().to_string(),
                retry_after: None,
            }),
            other => other,
        };
        let (next, status) = match outcome {
            Inbound::Wait(..)
            | Inbound::WaitNode(..)
            | Inbound::WaitKeys(..)
            | Inbound::WaitCluster(..) => {
                unreachable!("waits are followed above")
            }
            Inbound::Continue => {
                let backend = ex.backend.or(match route.action {
                    Action::Backend(b) => Some(b),
                    _ => None,
                });
                match (backend, &route.action) {
                    (Some(b), _) => {
                        let mut run = PolicyRun { pipe, ex: &mut ex };
                        self.forward(head_len, &facts, route, prefix_len, b, Some(&mut run))
                            .await
                    }
                    (None, Action::Respond(d)) => {
                        ex.write_x_cache();
                        let answer = Local::Direct(d, &route.response_headers);
                        local::answer(self, head_len, facts, answer, Some(&ex)).await
                    }
                    (None, Action::Redirect(r)) => {
                        ex.write_x_cache();
                        let location = local::location(r, self.rbuf.data(), &self.head, facts.tls);
                        let answer = Local::Redirect {
                            status: r.status,
                            location: &location,
                        };
                        local::answer(self, head_len, facts, answer, Some(&ex)).await
                    }
                    (None, _) => {
                        let message = "no backend: the operation has none and no \
                                       set-backend-service policy chose one";
                        self.fail(head_len, facts, route, pipe, &mut ex, 500, message, None)
                            .await
                    }
                }
            }
            Inbound::Respond(r) => {
                ex.write_x_cache();
                local::answer(self, head_len, facts, Local::Policy(r), Some(&ex)).await
            }
            Inbound::Refuse(refusal) => {
                let message = refusal.message;
                self.fail(
                    head_len,
                    facts,
                    route,
                    pipe,
                    &mut ex,
                    refusal.status,
                    &message,
                    refusal.retry_after,
                )
                .await
            }
            Inbound::Hit(hit) => {
                ex.write_x_cache();
                local::answer(self, head_len, facts, Local::Cached(&hit), Some(&ex)).await
            }
        };
        let bytes = ex.bytes;
        ex.settle(pipe, &g.policies, status, bytes, Instant::now());
        self.exchange = Some(ex);
        (next, status)
    }

    /// What the policies read from the request in the buffer.
    fn policy_ctx<'a>(&'a self, route: &'a Route, now: Instant) -> Ctx<'a, HeadView<'a>> {
        let buf = self.rbuf.data();
        let head = &self.head;
        Ctx {
            ip: self.client_ip(),
            method: head.method(buf),
            host: head.host(buf).unwrap_or_default(),
            path: head.path(buf),
            query: head.query(buf),
            target: head.target(buf),
            headers: HeadView { head, buf },
            route,
            now,
            client_cert: self.client_cert(),
        }
    }

    /// Answers a request a policy refused (or that has nowhere to go), after `on_error`.
    #[allow(clippy::too_many_arguments)]
    async fn fail(
        &mut self,
        head_len: usize,
        facts: Facts,
        route: &Route,
        pipe: &Pipeline,
        ex: &mut Exchange,
        status: u16,
        message: &str,
        retry_after: Option<u64>,
    ) -> (Next, u16) {
        let replaced = {
            let ctx = self.policy_ctx(route, Instant::now());
            ex.on_error(pipe, &ctx)
        };
        let answer = match replaced {
            Some(r) => Local::Policy(r),
            None => Local::Apim {
                status,
                message,
                retry_after,
            },
        };
        local::answer(self, head_len, facts, answer, Some(ex)).await
    }
}
