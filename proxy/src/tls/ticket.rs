//! Session ticket keys: ChaCha20-Poly1305 (ring) under a random key, wrapped in rustls's
//! `TicketRotator`, which makes a new key every `rotation` and still opens tickets made with
//! the one before. One rotator serves every core of a listener, so a ticket issued on one core
//! resumes on any other.

use std::sync::Arc;
use std::time::Duration;

use ring::aead;
use ring::rand::{SecureRandom, SystemRandom};
use rustls::crypto::GetRandomFailed;
use rustls::server::ProducesTickets;

/// The rotating ticketer for a listener, or an error naming why the random key failed.
pub fn rotating(rotation: Duration) -> Result<Arc<dyn ProducesTickets>, String> {
    let lifetime = rotation.as_secs().clamp(60, u64::from(u32::MAX / 2)) as u32;
    rustls::TicketRotator::new(lifetime, make)
        .map(|r| Arc::new(r) as Arc<dyn ProducesTickets>)
        .map_err(|e| format!("cannot make a session ticket key: {e}"))
}

fn make() -> Result<Box<dyn ProducesTickets>, GetRandomFailed> {
    let rng = SystemRandom::new();
    let mut key = [0u8; 32];
    let mut name = [0u8; 16];
    rng.fill(&mut key).map_err(|_| GetRandomFailed)?;
    rng.fill(&mut name).map_err(|_| GetRandomFailed)?;
    let key = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &key).map_err(|_| GetRandomFailed)?;
    Ok(Box::new(Sealer {
        key: aead::LessSafeKey::new(key),
        name,
        rng,
    }))
}

/// One ticket key. A ticket is `name (16) || nonce (12) || ciphertext || tag (16)`; the name
/// lets the rotator's previous key be tried only on its own tickets.
struct Sealer {
    key: aead::LessSafeKey,
    name: [u8; 16],
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

const NONCE: usize = 12;
const TAG: usize = 16;
/// Tickets longer than this are refused unopened (nothing rustls issues comes near it).
const MAX_TICKET: usize = 4096;

impl ProducesTickets for Sealer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        // The rotator reports its own lifetime; this one is not consulted.
        0
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(16 + NONCE + plain.len() + TAG);
        out.extend_from_slice(&self.name);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let (header, body) = out.split_at_mut(16 + NONCE);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(&header[..16]),
                body,
            )
            .ok()?;
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < 16 + NONCE + TAG || ticket.len() > MAX_TICKET {
            return None;
        }
        let (name, rest) = ticket.split_at(16);
        if name != self.name {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, aead::Aad::from(name), &mut body)
            .ok()?;
        let n = plain.len();
        body.truncate(n);
        Some(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_open_with_their_key_only() {
        let a = make().unwrap();
        let b = make().unwrap();
        let ticket = a.encrypt(b"session state").unwrap();
        assert_eq!(a.decrypt(&ticket).unwrap(), b"session state");
        assert!(b.decrypt(&ticket).is_none());
        let mut forged = ticket.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(a.decrypt(&forged).is_none());
        assert!(a.decrypt(&ticket[..20]).is_none());
    }

    #[test]
    fn the_rotator_issues_and_opens_tickets() {
        let t = rotating(Duration::from_secs(3600)).unwrap();
        assert!(t.enabled());
        let ticket = t.encrypt(b"x").unwrap();
        assert_eq!(t.decrypt(&ticket).unwrap(), b"x");
        assert_eq!(t.lifetime(), 7200);
    }
}
