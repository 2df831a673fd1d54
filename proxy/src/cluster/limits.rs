//! Cluster-wide rate limits: the node-wide lease protocol of `policy::limit`, with Redis as
//! the one counter every node leases from.
//!
//! Three levels, each touched only when the one below runs dry:
//!
//! 1. **The core.** Each core keeps the tokens it took for a key (a small map, no shared
//!    memory): a request spends one.
//! 2. **The node.** One line per key (by hash) of atomics: the tokens Redis granted this node
//!    and no core has taken yet, until when they may be spent, and whether a lease is in flight.
//!    A core takes a batch from it with one compare-and-swap.
//! 3. **Redis.** When the node's line is empty, one core (the one that claims the line) leases
//!    a batch from Redis with one script call ([`LEASE_SCRIPT`]), on its own connection and
//!    runtime; requests of other cores for that key wait for it (polling the line, bounded by
//!    the command timeout), and requests of other keys carry on.
//!
//! Redis counts every token it grants in the sub-window (a sixteenth of the period, on Redis's
//! own clock) it granted it in, and grants only what keeps the sum over the last period within
//! the limit. So the cluster never admits more than the limit in any period: **no
//! over-admission**, whatever the number of nodes (clock skew between nodes does not matter:
//! only Redis's clock counts, and a node stops spending a grant a sub-window before Redis stops
//! counting it). What it can do is admit less: tokens a node holds unspent are unavailable to
//! the others until they expire or are given back. A grant is at most `limit / 20` (and starts
//! at `limit / 100`), so the tokens held by `n` nodes are under `n * limit / 20` : with two
//! nodes, under 10 % of the limit. See docs/cluster.md for the bound and the sizing.
//!
//! Lease sizes adapt per key: a grant spent within a tenth of the period doubles the next one
//! (up to `limit / 20`), and one that expires more than half unused halves it (down to 1). Hot
//! keys therefore lease rarely, and cold keys hold little.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use ahash::AHashMap;

/// Sub-windows per period, as the node-wide window uses.
pub const SUBWINDOWS: u64 = 16;

/// Leases a Redis script grants from the sliding window of one key.
///
/// KEYS[1]: the key's hash (fields: sub-window number, value: tokens granted in it).
/// ARGV: limit, period (ms), tokens wanted.
/// Returns: {granted, used (after the grant), ms until the grant must be spent, ms until the
/// oldest counted sub-window leaves the window (when tokens come back)}.
pub const LEASE_SCRIPT: &str = r#"
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local sub = math.floor(period / 16)
if sub < 1 then sub = 1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = math.floor(now / sub)
local fields = redis.call('HGETALL', KEYS[1])
local used = 0
local oldest = cur
local stale = {}
for i = 1, #fields, 2 do
  local w = tonumber(fields[i])
  if w > cur - 16 then
    used = used + tonumber(fields[i + 1])
    if w < oldest then oldest = w end
  else
    stale[#stale + 1] = fields[i]
  end
end
if #stale > 0 then redis.call('HDEL', KEYS[1], unpack(stale)) end
local grant = limit - used
if grant > want then grant = want end
if grant < 0 then grant = 0 end
if grant > 0 then
  redis.call('HINCRBY', KEYS[1], cur, grant)
  used = used + grant
end
redis.call('PEXPIRE', KEYS[1], period + sub)
local spend_within = (cur + 15) * sub - now
local frees_in = (oldest + 16) * sub - now
return {grant, used, spend_within, frees_in, cur}
"#;

/// Leases calls of a cluster-wide quota's current period (fixed periods, numbered by the
/// nodes from their clocks; a node that is behind is moved to the newest period Redis knows).
///
/// KEYS[1]: the key's hash (`p`: period, `calls`, `bytes`). ARGV: calls limit (0: none), bytes
/// limit (0: none), period number, calls wanted, time to keep it (ms).
/// Returns {granted, calls used, bytes used}.
pub const QUOTA_SCRIPT: &str = r#"
local calls_limit = tonumber(ARGV[1])
local bytes_limit = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local p = tonumber(redis.call('HGET', KEYS[1], 'p') or '')
if p == nil or p < period then
  redis.call('HSET', KEYS[1], 'p', period, 'calls', 0, 'bytes', 0)
end
local calls = tonumber(redis.call('HGET', KEYS[1], 'calls') or '0')
local bytes = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')
local grant = want
if calls_limit > 0 and calls_limit - calls < grant then grant = calls_limit - calls end
if bytes_limit > 0 and bytes >= bytes_limit then grant = 0 end
if grant < 0 then grant = 0 end
if grant > 0 then calls = redis.call('HINCRBY', KEYS[1], 'calls', grant) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
return {grant, calls, bytes}
"#;

/// Counts response bytes against a cluster-wide quota's period.
///
/// KEYS[1]: the key's hash. ARGV: period number, bytes, time to keep it (ms).
pub const QUOTA_BYTES_SCRIPT: &str = r#"
local period = tonumber(ARGV[1])
local p = tonumber(redis.call('HGET', KEYS[1], 'p') or '')
if p == nil or p < period then
  redis.call('HSET', KEYS[1], 'p', period, 'calls', 0, 'bytes', 0)
elseif p > period then
  return 0
end
local bytes = redis.call('HINCRBY', KEYS[1], 'bytes', tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return bytes
"#;

/// Gives back tokens granted in a sub-window (while it still counts).
///
/// KEYS[1]: the key's hash. ARGV: the sub-window they were granted in, tokens.
/// Returns the tokens given back.
pub const RETURN_SCRIPT: &str = r#"
local w = ARGV[1]
local n = tonumber(ARGV[2])
local have = tonumber(redis.call('HGET', KEYS[1], w) or '0')
if n > have then n = have end
if n > 0 then redis.call('HINCRBY', KEYS[1], w, -n) end
return n
"#;

/// One key's line in the node-wide table.
#[repr(align(64))]
#[derive(Default)]
pub struct Line {
    /// The key's hash, plus one (0: the line is free).
    key: AtomicU64,
    /// Tokens granted to this node and not taken by a core.
    credit: AtomicU64,
    /// Node clock (ms) until which the line's grant (or refusal) holds.
    until_ms: AtomicU64,
    /// Node clock (ms) at which a core claimed the line to lease (0: none in flight).
    leasing: AtomicU64,
    /// The next grant's size.
    grant: AtomicU64,
    /// Node clock (ms) of the last grant.
    since_ms: AtomicU64,
    /// The Redis sub-window the grant was counted in.
    window: AtomicU64,
}

/// What a core may do for a key, after looking at its node line.
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    /// Tokens for this core (at least the `n` asked for).
    Tokens { tokens: u64, until_ms: u64 },
    /// The period's tokens are spent: refuse until then (node ms).
    Refused { until_ms: u64 },
    /// This core claimed the line: lease `want` tokens from Redis and call
    /// [`NodeRates::granted`].
    Lease { want: u64 },
    /// Another core is leasing this key: look again shortly.
    Wait,
}

/// One cluster-wide rate limit's node-wide table.
pub struct NodeRates {
    pub limit: u64,
    pub period_ms: u64,
    workers: u64,
    lines: Box<[Line]>,
}

impl NodeRates {
    pub fn new(limit: u64, period_ms: u64, workers: usize, max_keys: usize) -> NodeRates {
        let n = max_keys
            .saturating_mul(2)
            .clamp(1024, 1 << 22)
            .next_power_of_two();
        NodeRates {
            limit,
            period_ms,
            workers: workers.max(1) as u64,
            lines: (0..n).map(|_| Line::default()).collect(),
        }
    }

    fn line(&self, key: u64) -> &Line {
        &self.lines[(key as usize) & (self.lines.len() - 1)]
    }

    /// The largest grant: `limit / 20`, at least 1.
    pub fn max_grant(&self) -> u64 {
        (self.limit / 20).max(1)
    }

    fn first_grant(&self) -> u64 {
        (self.limit / 100).clamp(1, self.max_grant())
    }

    /// A lease claimed longer ago than this is taken to have failed.
    const LEASE_STALE_MS: u64 = 2_000;

    /// Takes tokens for `n` calls of `key` at node time `now_ms`.
    pub fn take(&self, key: u64, n: u64, now_ms: u64) -> Take {
        let line = self.line(key);
        let tag = key.wrapping_add(1).max(1);
        let ours = line.key.load(Relaxed) == tag;
        let until = line.until_ms.load(Relaxed);
        if ours && now_ms < until {
            let mut credit = line.credit.load(Relaxed);
            loop {
                if credit < n {
                    break;
                }
                // A batch for this core: a share of what is left, so that every core of
                // the node gets some before the line runs dry.
                let batch = (credit / (2 * self.workers)).max(n).min(credit);
                match line
                    .credit
                    .compare_exchange_weak(credit, credit - batch, Relaxed, Relaxed)
                {
                    Ok(_) => {
                        return Take::Tokens {
                            tokens: batch,
                            until_ms: until,
                        }
                    }
                    Err(now) => credit = now,
                }
            }
            // Dry: a refusal stands until `until`, unless a lease may bring more.
            if line.grant.load(Relaxed) == 0 {
                return Take::Refused { until_ms: until };
            }
        }
        // Claim the line for a lease.
        let leasing = line.leasing.load(Relaxed);
        if leasing != 0 && now_ms.saturating_sub(leasing) < Self::LEASE_STALE_MS {
            return Take::Wait;
        }
        if line
            .leasing
            .compare_exchange(leasing, now_ms.max(1), Relaxed, Relaxed)
            .is_err()
        {
            return Take::Wait;
        }
        let grant = if ours {
            line.grant.load(Relaxed).max(1)
        } else {
            self.first_grant()
        };
        Take::Lease {
            want: grant.max(n).min(self.limit.max(n)),
        }
    }

    /// Records what Redis granted for `key` (after [`Take::Lease`]): `granted` tokens to spend
    /// until `until_ms` (node clock); with none, refusals until `refused_until_ms`.
    /// `spent_fast`: the previous grant ran out within a tenth of the period.
    pub fn granted(
        &self,
        key: u64,
        granted: u64,
        until_ms: u64,
        refused_until_ms: u64,
        now_ms: u64,
        window: u64,
    ) {
        let line = self.line(key);
        line.window.store(window, Relaxed);
        let tag = key.wrapping_add(1).max(1);
        let was_ours = line.key.swap(tag, Relaxed) == tag;
        let since = line.since_ms.swap(now_ms, Relaxed);
        let left = line.credit.swap(granted, Relaxed);
        let mut next = if was_ours {
            line.grant.load(Relaxed).max(1)
        } else {
            self.first_grant()
        };
        if was_ours && granted > 0 {
            // The last grant ran out early: lease more at a time.
            if left == 0 && now_ms.saturating_sub(since) < self.period_ms / 10 {
                next = (next * 2).min(self.max_grant());
            } else if left > next / 2 {
                next = (next / 2).max(1);
            }
        }
        line.grant
            .store(if granted == 0 { 0 } else { next }, Relaxed);
        line.until_ms.store(
            if granted == 0 {
                refused_until_ms
            } else {
                until_ms
            },
            Relaxed,
        );
        line.leasing.store(0, Relaxed);
    }

    /// Takes back the credit of keys whose grant has sat unspent for `idle_ms` (the key went
    /// quiet): what to give back to Redis, as (key, tokens, sub-window). Another node may then
    /// lease them.
    pub fn reclaim(&self, now_ms: u64, idle_ms: u64, out: &mut Vec<(u64, u64, u64)>) {
        for line in self.lines.iter() {
            let credit = line.credit.load(Relaxed);
            if credit == 0
                || line.leasing.load(Relaxed) != 0
                || now_ms >= line.until_ms.load(Relaxed)
                || now_ms.saturating_sub(line.since_ms.load(Relaxed)) < idle_ms
            {
                continue;
            }
            if line
                .credit
                .compare_exchange(credit, 0, Relaxed, Relaxed)
                .is_ok()
            {
                let key = line.key.load(Relaxed).wrapping_sub(1);
                out.push((key, credit, line.window.load(Relaxed)));
                // The next lease for it starts small again.
                line.grant.store(self.first_grant(), Relaxed);
            }
        }
    }

    /// Gives up a claimed lease that failed (Redis unavailable).
    pub fn lease_failed(&self, key: u64) {
        self.line(key).leasing.store(0, Relaxed);
    }
}

/// One core's tokens, per key (cluster-wide limits only).
#[derive(Default)]
pub struct CoreTokens {
    held: RefCell<AHashMap<u64, (u64, u64)>>,
}

/// Keys a core keeps tokens for at most; past it, expired ones are dropped first.
const CORE_KEYS: usize = 65_536;

impl CoreTokens {
    /// Spends `n` tokens of `key` if this core holds them (and they have not expired): the
    /// tokens it holds after.
    pub fn spend(&self, key: u64, n: u64, now_ms: u64) -> Option<u64> {
        let mut held = self.held.borrow_mut();
        match held.get_mut(&key) {
            Some((tokens, until)) if *tokens >= n && now_ms < *until => {
                *tokens -= n;
                Some(*tokens)
            }
            _ => None,
        }
    }

    /// Adds tokens taken from the node line, and spends `n` of them: the tokens held after.
    pub fn add_and_spend(&self, key: u64, tokens: u64, n: u64, until_ms: u64, now_ms: u64) -> u64 {
        let mut held = self.held.borrow_mut();
        if held.len() >= CORE_KEYS {
            held.retain(|_, (t, until)| *t > 0 && now_ms < *until);
        }
        let entry = held.entry(key).or_insert((0, until_ms));
        if now_ms >= entry.1 || entry.0 == 0 {
            *entry = (0, until_ms);
        }
        // Tokens held from an earlier batch may expire sooner: all go by the earlier time
        // (which can only refuse early, never admit late).
        entry.1 = entry.1.min(until_ms);
        entry.0 = (entry.0 + tokens).saturating_sub(n);
        entry.0
    }

    /// Gives back `n` tokens of `key` (a call that did not count).
    pub fn give_back(&self, key: u64, n: u64) {
        if let Some((tokens, _)) = self.held.borrow_mut().get_mut(&key) {
            *tokens += n;
        }
    }

    /// Drops expired entries (the worker's tick).
    pub fn sweep(&self, now_ms: u64) {
        let mut held = self.held.borrow_mut();
        if held.len() > 1024 {
            held.retain(|_, (_, until)| now_ms < *until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_credit_is_reclaimed_once() {
        let node = NodeRates::new(1_000, 10_000, 1, 100);
        let Take::Lease { want } = node.take(9, 1, 0) else {
            panic!("a lease")
        };
        node.granted(9, want, 9_000, 0, 0, 42);
        let mut out = Vec::new();
        node.reclaim(500, 1_250, &mut out);
        assert!(out.is_empty(), "not idle long enough");
        node.reclaim(2_000, 1_250, &mut out);
        assert_eq!(out, [(9, want, 42)]);
        out.clear();
        node.reclaim(3_000, 1_250, &mut out);
        assert!(out.is_empty(), "given back once");
    }

    #[test]
    fn a_core_leases_then_spends_locally_and_the_node_refuses_when_redis_does() {
        let node = NodeRates::new(200, 10_000, 2, 100);
        // Nothing yet: this core claims the lease; another core waits.
        let want = match node.take(7, 1, 1_000) {
            Take::Lease { want } => want,
            other => panic!("{other:?}"),
        };
        assert_eq!(want, 2, "the first grant is limit / 100");
        assert_eq!(node.take(7, 1, 1_001), Take::Wait);
        node.granted(7, want, 10_000, 0, 1_002, 0);
        // Cores take from the node credit.
        match node.take(7, 1, 1_003) {
            Take::Tokens { tokens, until_ms } => {
                assert!(tokens >= 1);
                assert_eq!(until_ms, 10_000);
            }
            other => panic!("{other:?}"),
        }
        // Redis refused: every core refuses until then, without asking Redis.
        let _ = node.take(7, 2, 1_004);
        node.granted(7, 0, 0, 5_000, 1_005, 0);
        assert_eq!(node.take(7, 1, 1_006), Take::Refused { until_ms: 5_000 });
        assert!(matches!(node.take(7, 1, 5_001), Take::Lease { .. }));
    }

    #[test]
    fn grants_grow_for_hot_keys_and_stay_within_the_bound() {
        let node = NodeRates::new(1_000, 10_000, 1, 100);
        let mut now = 0;
        let mut last = 0;
        let mut next = node.take(1, 1, now);
        for _ in 0..20 {
            let Take::Lease { want } = next else {
                panic!("a lease: {next:?}")
            };
            assert!(want <= node.max_grant());
            last = want;
            node.granted(1, want, now + 9_000, 0, now, 0);
            now += 10;
            // Spend it all at once: the take after the last token claims the next lease.
            next = node.take(1, 1, now);
            while let Take::Tokens { .. } = next {
                next = node.take(1, 1, now);
            }
        }
        assert_eq!(last, node.max_grant(), "a hot key leases the most");
    }

    #[test]
    fn core_tokens_expire_and_come_back() {
        let core = CoreTokens::default();
        assert_eq!(core.spend(3, 1, 0), None);
        assert_eq!(core.add_and_spend(3, 5, 1, 100, 0), 4);
        assert_eq!(core.spend(3, 4, 10), Some(0));
        assert_eq!(core.spend(3, 1, 10), None);
        core.give_back(3, 1);
        assert_eq!(core.spend(3, 1, 10), Some(0));
        core.add_and_spend(3, 5, 1, 100, 20);
        assert_eq!(core.spend(3, 1, 100), None, "expired");
    }
}
