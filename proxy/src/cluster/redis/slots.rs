//! Redis Cluster routing: the key slot of a key, the key of a command, and the map of which
//! master owns which slot.
//!
//! Both clients keep a [`SlotMap`] (built from `CLUSTER SLOTS`) and route each command to the
//! master of its first key's slot. The map is a hint, not the truth: a `MOVED` reply corrects
//! one slot at once ([`SlotMap::assign`]) and asks for a full refresh, so a map that went stale
//! during resharding or a fail-over heals on the first command that notices.

use std::time::Duration;

use super::error::RedisError;
use super::resp::{error_kind, ErrorKind, Redirect, Value};
use super::topology::Endpoint;

/// The number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), as Redis Cluster hashes keys.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// The hash slot of `key`. When the key holds a hash tag (a `{` followed later by a `}` with
/// at least one byte between them: the first such pair), only the tag is hashed, so
/// `{user1000}.following` and `{user1000}.followers` share a slot.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS
}

/// The key a command is routed by: its first key, or `None` for commands that have none
/// (`PING`, `INFO`, `SCRIPT LOAD`, an `EVAL` with no keys, ...), which may go to any node.
/// Knows where the first key sits in the commands whose first argument is not a key.
pub fn command_key<'a>(args: &[&'a [u8]]) -> Option<&'a [u8]> {
    let name = args.first()?;
    let mut upper = [0u8; 16];
    if name.len() > upper.len() {
        return args.get(1).copied();
    }
    for (u, b) in upper.iter_mut().zip(name.iter()) {
        *u = b.to_ascii_uppercase();
    }
    let index = match &upper[..name.len()] {
        // No key at all.
        b"PING" | b"ECHO" | b"INFO" | b"TIME" | b"DBSIZE" | b"SCRIPT" | b"FUNCTION"
        | b"CLUSTER" | b"CONFIG" | b"CLIENT" | b"COMMAND" | b"DEBUG" | b"FLUSHALL" | b"FLUSHDB"
        | b"RANDOMKEY" | b"KEYS" | b"SCAN" | b"SELECT" | b"AUTH" | b"HELLO" | b"ROLE"
        | b"MULTI" | b"EXEC" | b"DISCARD" | b"UNWATCH" | b"WAIT" | b"SLOWLOG" | b"LASTSAVE"
        | b"SAVE" | b"BGSAVE" | b"ASKING" | b"READONLY" | b"READWRITE" | b"LATENCY" | b"ACL"
        | b"MODULE" | b"SENTINEL" | b"SHUTDOWN" | b"REPLICAOF" => return None,
        // `CMD numkeys key ...`.
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            return first_of_counted(args, 2)
        }
        b"ZUNION" | b"ZINTER" | b"ZDIFF" | b"SINTERCARD" | b"ZINTERCARD" | b"LMPOP" | b"ZMPOP" => {
            return first_of_counted(args, 1)
        }
        b"BLMPOP" | b"BZMPOP" => return first_of_counted(args, 2),
        // `CMD subcommand key` / `BITOP op dest ...`.
        b"BITOP" | b"OBJECT" | b"MEMORY" | b"XINFO" | b"XGROUP" => 2,
        b"XREAD" | b"XREADGROUP" => {
            let streams = args
                .iter()
                .position(|a| a.eq_ignore_ascii_case(b"STREAMS"))?;
            streams + 1
        }
        _ => 1,
    };
    args.get(index).copied()
}

/// The first key of a command whose key count is at `count_at` and keys follow it.
fn first_of_counted<'a>(args: &[&'a [u8]], count_at: usize) -> Option<&'a [u8]> {
    let count = std::str::from_utf8(args.get(count_at)?).ok()?;
    match count.parse::<u32>() {
        Ok(n) if n > 0 => args.get(count_at + 1).copied(),
        _ => None,
    }
}

/// Which master owns each slot. A lookup is one array index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMap {
    /// Per slot, the index into `nodes` of its master, or [`UNASSIGNED`].
    owner: Box<[u16]>,
    nodes: Vec<Endpoint>,
}

const UNASSIGNED: u16 = u16::MAX;

impl Default for SlotMap {
    fn default() -> SlotMap {
        SlotMap::new()
    }
}

impl SlotMap {
    /// A map with no slot assigned.
    pub fn new() -> SlotMap {
        SlotMap {
            owner: vec![UNASSIGNED; usize::from(SLOTS)].into_boxed_slice(),
            nodes: Vec::new(),
        }
    }

    /// The map in a `CLUSTER SLOTS` reply from `asked`: `[[start, end, [host, port, id, ...],
    /// replicas...], ...]`. A master whose host is empty or `?` (the node does not know its
    /// own address) is taken to be on `asked`'s host.
    pub fn from_cluster_slots(reply: &Value, asked: &Endpoint) -> Result<SlotMap, String> {
        let ranges = reply
            .as_array()
            .ok_or_else(|| format!("CLUSTER SLOTS answered {reply:?}, not an array"))?;
        let mut map = SlotMap::new();
        for range in ranges {
            let fields = range.as_array().unwrap_or(&[]);
            let (Some(start), Some(end), Some(master)) = (
                fields.first().and_then(Value::as_int),
                fields.get(1).and_then(Value::as_int),
                fields.get(2).and_then(Value::as_array),
            ) else {
                return Err(format!("CLUSTER SLOTS: a malformed range {range:?}"));
            };
            if !(0..i64::from(SLOTS)).contains(&start) || !(start..i64::from(SLOTS)).contains(&end)
            {
                return Err(format!("CLUSTER SLOTS: a bad range {start}-{end}"));
            }
            let host = master.first().and_then(Value::as_str).unwrap_or("");
            let port = master
                .get(1)
                .and_then(Value::as_int)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("CLUSTER SLOTS: a master without a port {master:?}"))?;
            let host = if host.is_empty() || host == "?" {
                asked.host.clone()
            } else {
                host.to_string()
            };
            let node = map.intern(Endpoint { host, port });
            for slot in start..=end {
                map.owner[slot as usize] = node;
            }
        }
        Ok(map)
    }

    /// The index (into [`SlotMap::nodes`]) of the master that owns `slot`.
    pub fn owner(&self, slot: u16) -> Option<usize> {
        match self.owner.get(usize::from(slot)) {
            Some(&UNASSIGNED) | None => None,
            Some(&i) => Some(usize::from(i)),
        }
    }

    /// Every master this map has named, in the order first seen.
    pub fn nodes(&self) -> &[Endpoint] {
        &self.nodes
    }

    /// The index of `endpoint`, added if new.
    pub fn intern(&mut self, endpoint: Endpoint) -> u16 {
        match self.nodes.iter().position(|n| *n == endpoint) {
            Some(i) => i as u16,
            None => {
                self.nodes.push(endpoint);
                (self.nodes.len() - 1) as u16
            }
        }
    }

    /// `MOVED`: `slot` belongs to `endpoint` now. Returns its index.
    pub fn assign(&mut self, slot: u16, endpoint: Endpoint) -> usize {
        let node = self.intern(endpoint);
        self.owner[usize::from(slot)] = node;
        usize::from(node)
    }

    /// How many slots no master owns (a healthy cluster has none).
    pub fn unassigned(&self) -> usize {
        self.owner.iter().filter(|&&o| o == UNASSIGNED).count()
    }
}

/// How many times one command is sent at most (redirects and retries included).
pub(crate) const MAX_ATTEMPTS: u32 = 6;

/// The pause before retrying after `TRYAGAIN` or `CLUSTERDOWN`, growing with the attempt.
const RETRY_PAUSE: Duration = Duration::from_millis(25);

/// What a cluster client does with a node's answer to a command (both clients decide alike).
#[derive(Debug)]
pub(crate) enum Next {
    /// The answer is final (an error reply becomes [`RedisError::Server`]).
    Done(Result<Value, RedisError>),
    /// Send the command to `endpoint`: after `ASKING` when `ask`, and otherwise (`MOVED`)
    /// `slot` belongs to it from now on.
    Redirect {
        endpoint: Endpoint,
        slot: u16,
        ask: bool,
    },
    /// Send it again after this pause (the cluster is resharding or failing over).
    Pause(Duration),
}

/// Decides on `answer`, which `node` gave to the `attempt`-th sending (from 1).
pub(crate) fn next_step(answer: Result<Value, RedisError>, node: &Endpoint, attempt: u32) -> Next {
    let message = match answer {
        Ok(Value::Error(message)) => message,
        Ok(value) => return Next::Done(Ok(value)),
        Err(e) => return Next::Done(Err(e)),
    };
    let last = attempt >= MAX_ATTEMPTS;
    match error_kind(&message) {
        ErrorKind::Moved | ErrorKind::Ask if !last => match Redirect::parse(&message) {
            Some(r) => Next::Redirect {
                endpoint: Endpoint {
                    host: if r.host.is_empty() {
                        node.host.clone()
                    } else {
                        r.host
                    },
                    port: r.port,
                },
                slot: r.slot,
                ask: r.ask,
            },
            None => Next::Done(Err(RedisError::Server(message))),
        },
        ErrorKind::TryAgain | ErrorKind::ClusterDown if !last => Next::Pause(RETRY_PAUSE * attempt),
        _ => Next::Done(Err(RedisError::Server(message))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_match_redis() {
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"hello"), 866);
        assert_eq!(key_slot(b""), 0);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"{user1000}.following"), 3443);
        assert_eq!(
            key_slot(b"{user1000}.followers"),
            key_slot(b"{user1000}.following")
        );
        // Only the first `{...}` counts, and an empty one means no tag.
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar"), crc16(b"foo{bar") % SLOTS);
        assert_eq!(key_slot(b"}{x}"), key_slot(b"x"));
    }

    #[test]
    fn first_keys_of_commands() {
        fn key<'a>(args: &[&'a [u8]]) -> Option<&'a [u8]> {
            command_key(args)
        }
        assert_eq!(key(&[b"GET", b"k"]), Some(&b"k"[..]));
        assert_eq!(key(&[b"set", b"k", b"v"]), Some(&b"k"[..]));
        assert_eq!(key(&[b"PING"]), None);
        assert_eq!(key(&[b"script", b"load", b"return 1"]), None);
        assert_eq!(
            key(&[b"EVALSHA", b"abc", b"2", b"k1", b"k2", b"a"]),
            Some(&b"k1"[..])
        );
        assert_eq!(key(&[b"EVAL", b"return 1", b"0", b"a"]), None);
        assert_eq!(key(&[b"BITOP", b"AND", b"dest", b"a"]), Some(&b"dest"[..]));
        assert_eq!(key(&[b"OBJECT", b"ENCODING", b"k"]), Some(&b"k"[..]));
        assert_eq!(key(&[b"ZUNION", b"2", b"a", b"b"]), Some(&b"a"[..]));
        assert_eq!(
            key(&[b"BLMPOP", b"0", b"1", b"l", b"LEFT"]),
            Some(&b"l"[..])
        );
        assert_eq!(
            key(&[b"XREAD", b"COUNT", b"2", b"STREAMS", b"s1", b"0"]),
            Some(&b"s1"[..])
        );
        assert_eq!(key(&[b"XREAD", b"COUNT", b"2"]), None);
        assert_eq!(key(&[]), None);
        assert_eq!(key(&[b"AVERYLONGCOMMANDNAMEINDEED", b"k"]), Some(&b"k"[..]));
    }

    fn bulk(s: &str) -> Value {
        Value::Bulk(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn a_map_from_cluster_slots() {
        let node = |host: &str, port: i64| {
            Value::Array(Some(vec![bulk(host), Value::Int(port), bulk("id")]))
        };
        let reply = Value::Array(Some(vec![
            Value::Array(Some(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7000),
                node("10.0.0.4", 7003),
            ])),
            Value::Array(Some(vec![
                Value::Int(5461),
                Value::Int(10922),
                node("", 7001),
            ])),
            Value::Array(Some(vec![
                Value::Int(10923),
                Value::Int(16383),
                node("10.0.0.3", 7002),
            ])),
        ]));
        let asked = Endpoint::new("10.0.0.2", 7000);
        let mut map = SlotMap::from_cluster_slots(&reply, &asked).unwrap();
        assert_eq!(map.unassigned(), 0);
        assert_eq!(
            map.nodes(),
            &[
                Endpoint::new("10.0.0.1", 7000),
                Endpoint::new("10.0.0.2", 7001),
                Endpoint::new("10.0.0.3", 7002)
            ]
        );
        assert_eq!(map.owner(0), Some(0));
        assert_eq!(map.owner(5461), Some(1));
        assert_eq!(map.owner(16383), Some(2));
        assert_eq!(map.assign(100, Endpoint::new("10.0.0.9", 7009)), 3);
        assert_eq!(map.owner(100), Some(3));
        assert_eq!(map.owner(101), Some(0));
        assert_eq!(SlotMap::new().owner(5), None);
        assert_eq!(SlotMap::new().unassigned(), usize::from(SLOTS));

        for bad in [
            Value::Int(1),
            Value::Array(Some(vec![Value::Array(Some(vec![Value::Int(0)]))])),
            Value::Array(Some(vec![Value::Array(Some(vec![
                Value::Int(10),
                Value::Int(5),
                node("a", 1),
            ]))])),
            Value::Array(Some(vec![Value::Array(Some(vec![
                Value::Int(0),
                Value::Int(16384),
                node("a", 1),
            ]))])),
        ] {
            assert!(
                SlotMap::from_cluster_slots(&bad, &asked).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn next_steps() {
        let node = Endpoint::new("10.0.0.1", 7000);
        let err = |m: &str| Ok(Value::Error(m.to_string()));
        assert!(matches!(
            next_step(Ok(Value::Int(1)), &node, 1),
            Next::Done(Ok(Value::Int(1)))
        ));
        assert!(matches!(
            next_step(err("MOVED 12 10.0.0.2:7001"), &node, 1),
            Next::Redirect { endpoint, slot: 12, ask: false } if endpoint == Endpoint::new("10.0.0.2", 7001)
        ));
        assert!(matches!(
            next_step(err("ASK 12 :7002"), &node, 1),
            Next::Redirect { endpoint, slot: 12, ask: true } if endpoint == Endpoint::new("10.0.0.1", 7002)
        ));
        assert!(
            matches!(next_step(err("TRYAGAIN x"), &node, 2), Next::Pause(p) if p == RETRY_PAUSE * 2)
        );
        assert!(
            matches!(next_step(err("CLUSTERDOWN x"), &node, 1), Next::Pause(p) if p == RETRY_PAUSE)
        );
        assert!(matches!(
            next_step(err("MOVED 12 10.0.0.2:7001"), &node, MAX_ATTEMPTS),
            Next::Done(Err(RedisError::Server(m))) if m.starts_with("MOVED")
        ));
        assert!(matches!(
            next_step(err("TRYAGAIN"), &node, MAX_ATTEMPTS),
            Next::Done(Err(RedisError::Server(_)))
        ));
        assert!(matches!(
            next_step(err("WRONGTYPE x"), &node, 1),
            Next::Done(Err(RedisError::Server(m))) if m == "WRONGTYPE x"
        ));
        assert!(matches!(
            next_step(Err(RedisError::Timeout), &node, 1),
            Next::Done(Err(RedisError::Timeout))
        ));
    }
}
