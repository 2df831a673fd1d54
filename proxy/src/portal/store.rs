//! The portal's state in SQLite: developers, their sessions, the subscriptions they hold, and
//! their usage per day. One connection behind a mutex: the portal's requests are few and
//! short, and none of this is on the data path.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

/// A developer account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Developer {
    pub id: i64,
    pub email: String,
    pub name: String,
    /// Unix seconds.
    pub created: i64,
}

/// A subscription issued at run time (through the portal or the admin API).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSubscription {
    pub id: String,
    /// The developer's email (the owner).
    pub owner: String,
    pub product: String,
    pub state: SubState,
    pub primary_key: String,
    pub secondary_key: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix milliseconds of the last change (the newest change wins across nodes).
    pub updated: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubState {
    /// Waiting for an owner's approval: its keys open nothing yet.
    Pending,
    Active,
    Suspended,
    Cancelled,
}

impl SubState {
    pub fn as_str(self) -> &'static str {
        match self {
            SubState::Pending => "pending",
            SubState::Active => "active",
            SubState::Suspended => "suspended",
            SubState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<SubState> {
        Some(match s {
            "pending" => SubState::Pending,
            "active" => SubState::Active,
            "suspended" => SubState::Suspended,
            "cancelled" => SubState::Cancelled,
            _ => return None,
        })
    }
}

/// A session: who (if anyone) is signed in, and the form token.
#[derive(Clone, Debug)]
pub struct Session {
    pub developer: Option<i64>,
    pub csrf: String,
    pub expires: i64,
}

pub struct Store {
    db: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS developers (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    password TEXT NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash BLOB PRIMARY KEY,
    developer INTEGER REFERENCES developers(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    expires INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS subscriptions (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    product TEXT NOT NULL,
    state TEXT NOT NULL,
    primary_key TEXT NOT NULL,
    secondary_key TEXT NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_owner ON subscriptions(owner);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS usage (
    subscription TEXT NOT NULL,
    day TEXT NOT NULL,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    PRIMARY KEY (subscription, day)
);
";

fn sql(e: rusqlite::Error) -> String {
    format!("portal database: {e}")
}

impl Store {
    /// Opens (creating when missing, mode 0600) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("portal database {}: {e}", dir.display()))?;
        }
        let existed = path.exists();
        let db = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !existed {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        db.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;",
        )
        .map_err(sql)?;
        db.execute_batch(SCHEMA).map_err(sql)?;
        Ok(Store { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The random 32-byte secret named `name`, made the first time it is asked for.
    pub fn secret(&self, name: &str) -> Result<Vec<u8>, String> {
        let db = self.db();
        let found: Option<Vec<u8>> = db
            .query_row(
                "SELECT value FROM secrets WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        if let Some(v) = found {
            return Ok(v);
        }
        let mut value = vec![0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut value)
            .map_err(|_| "no random source".to_string())?;
        db.execute(
            "INSERT INTO secrets (name, value) VALUES (?1, ?2)",
            params![name, value],
        )
        .map_err(sql)?;
        Ok(value)
    }

    // -- developers --------------------------------------------------------------------------

    /// Adds a developer; None when the email is taken.
    pub fn add_developer(
        &self,
        email: &str,
        name: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<Developer>, String> {
        let db = self.db();
        let done = db.execute(
            "INSERT INTO developers (email, name, password, created, updated) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(email) DO NOTHING",
            params![email, name, password_hash, now, now * 1000],
        );
        match done.map_err(sql)? {
            0 => Ok(None),
            _ => Ok(Some(Developer {
                id: db.last_insert_rowid(),
                email: email.to_string(),
                name: name.to_string(),
                created: now,
            })),
        }
    }

    /// A developer and their password hash, by email.
    pub fn developer_by_email(&self, email: &str) -> Result<Option<(Developer, String)>, String> {
        self.db()
            .query_row(
                "SELECT id, email, name, created, password FROM developers WHERE email = ?1",
                params![email],
                |r| Ok((developer(r)?, r.get(4)?)),
            )
            .optional()
            .map_err(sql)
    }

    pub fn developer(&self, id: i64) -> Result<Option<Developer>, String> {
        self.db()
            .query_row(
                "SELECT id, email, name, created FROM developers WHERE id = ?1",
                params![id],
                developer,
            )
            .optional()
            .map_err(sql)
    }

    pub fn developers(&self) -> Result<Vec<Developer>, String> {
        let db = self.db();
        let mut q = db
            .prepare("SELECT id, email, name, created FROM developers ORDER BY id")
            .map_err(sql)?;
        let rows = q.query_map([], developer).map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// Inserts or replaces a developer known by another node (same email), keeping the newer.
    pub fn merge_developer(
        &self,
        email: &str,
        name: &str,
        password_hash: &str,
        created: i64,
        updated: i64,
    ) -> Result<bool, String> {
        let n = self
            .db()
            .execute(
                "INSERT INTO developers (email, name, password, created, updated) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(email) DO UPDATE SET name = excluded.name, password = excluded.password,
                     updated = excluded.updated
                 WHERE excluded.updated > developers.updated",
                params![email, name, password_hash, created, updated],
            )
            .map_err(sql)?;
        Ok(n > 0)
    }

    /// Every developer with the password hash and change time, for sharing across nodes.
    pub fn developer_records(&self) -> Result<Vec<(Developer, String, i64)>, String> {
        let db = self.db();
        let mut q = db
            .prepare("SELECT id, email, name, created, password, updated FROM developers")
            .map_err(sql)?;
        let rows = q
            .query_map([], |r| Ok((developer(r)?, r.get(4)?, r.get(5)?)))
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    // -- sessions ----------------------------------------------------------------------------

    pub fn put_session(&self, token_hash: &[u8], s: &Session) -> Result<(), String> {
        let db = self.db();
        db.execute(
            "INSERT OR REPLACE INTO sessions (token_hash, developer, csrf, expires) VALUES (?1, ?2, ?3, ?4)",
            params![token_hash, s.developer, s.csrf, s.expires],
        )
        .map_err(sql)?;
        Ok(())
    }

    pub fn session(&self, token_hash: &[u8], now: i64) -> Result<Option<Session>, String> {
        self.db()
            .query_row(
                "SELECT developer, csrf, expires FROM sessions WHERE token_hash = ?1 AND expires > ?2",
                params![token_hash, now],
                |r| {
                    Ok(Session {
                        developer: r.get(0)?,
                        csrf: r.get(1)?,
                        expires: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(sql)
    }

    pub fn touch_session(&self, token_hash: &[u8], expires: i64) -> Result<(), String> {
        self.db()
            .execute(
                "UPDATE sessions SET expires = ?2 WHERE token_hash = ?1",
                params![token_hash, expires],
            )
            .map_err(sql)?;
        Ok(())
    }

    pub fn delete_session(&self, token_hash: &[u8]) -> Result<(), String> {
        self.db()
            .execute(
                "DELETE FROM sessions WHERE token_hash = ?1",
                params![token_hash],
            )
            .map_err(sql)?;
        Ok(())
    }

    pub fn expire_sessions(&self, now: i64) -> Result<(), String> {
        self.db()
            .execute("DELETE FROM sessions WHERE expires <= ?1", params![now])
            .map_err(sql)?;
        Ok(())
    }

    // -- subscriptions -----------------------------------------------------------------------

    /// Inserts a subscription, or replaces one with its id when `s` is newer.
    pub fn put_subscription(&self, s: &StoredSubscription) -> Result<bool, String> {
        let n = self
            .db()
            .execute(
                "INSERT INTO subscriptions (id, owner, product, state, primary_key, secondary_key, created, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(id) DO UPDATE SET owner = excluded.owner, product = excluded.product,
                     state = excluded.state, primary_key = excluded.primary_key,
                     secondary_key = excluded.secondary_key, updated = excluded.updated
                 WHERE excluded.updated > subscriptions.updated",
                params![
                    s.id,
                    s.owner,
                    s.product,
                    s.state.as_str(),
                    s.primary_key,
                    s.secondary_key,
                    s.created,
                    s.updated
                ],
            )
            .map_err(sql)?;
        Ok(n > 0)
    }

    pub fn subscription(&self, id: &str) -> Result<Option<StoredSubscription>, String> {
        self.db()
            .query_row(
                "SELECT id, owner, product, state, primary_key, secondary_key, created, updated
                 FROM subscriptions WHERE id = ?1",
                params![id],
                subscription,
            )
            .optional()
            .map_err(sql)
    }

    /// Every subscription (of `owner`, when given), oldest first.
    pub fn subscriptions(&self, owner: Option<&str>) -> Result<Vec<StoredSubscription>, String> {
        let db = self.db();
        let mut q = db
            .prepare(
                "SELECT id, owner, product, state, primary_key, secondary_key, created, updated
                 FROM subscriptions WHERE ?1 IS NULL OR owner = ?1 ORDER BY created, id",
            )
            .map_err(sql)?;
        let rows = q.query_map(params![owner], subscription).map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    // -- usage -------------------------------------------------------------------------------

    pub fn add_usage(
        &self,
        subscription: &str,
        day: &str,
        requests: u64,
        errors: u64,
    ) -> Result<(), String> {
        self.db()
            .execute(
                "INSERT INTO usage (subscription, day, requests, errors) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(subscription, day) DO UPDATE SET requests = requests + excluded.requests,
                     errors = errors + excluded.errors",
                params![subscription, day, requests as i64, errors as i64],
            )
            .map_err(sql)?;
        Ok(())
    }

    /// Requests and errors per day from `since` (a `YYYY-MM-DD` day) over `subscriptions`.
    pub fn usage(
        &self,
        subscriptions: &[String],
        since: &str,
    ) -> Result<Vec<(String, u64, u64)>, String> {
        let db = self.db();
        let mut q = db
            .prepare(
                "SELECT day, requests, errors FROM usage WHERE subscription = ?1 AND day >= ?2",
            )
            .map_err(sql)?;
        let mut by_day: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        for s in subscriptions {
            let rows = q
                .query_map(params![s, since], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(sql)?;
            for row in rows {
                let (day, req, err) = row.map_err(sql)?;
                let e = by_day.entry(day).or_default();
                e.0 += req.max(0) as u64;
                e.1 += err.max(0) as u64;
            }
        }
        Ok(by_day.into_iter().map(|(d, (r, e))| (d, r, e)).collect())
    }
}

fn developer(r: &rusqlite::Row<'_>) -> rusqlite::Result<Developer> {
    Ok(Developer {
        id: r.get(0)?,
        email: r.get(1)?,
        name: r.get(2)?,
        created: r.get(3)?,
    })
}

fn subscription(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredSubscription> {
    let state: String = r.get(3)?;
    Ok(StoredSubscription {
        id: r.get(0)?,
        owner: r.get(1)?,
        product: r.get(2)?,
        state: SubState::parse(&state).unwrap_or(SubState::Suspended),
        primary_key: r.get(4)?,
        secondary_key: r.get(5)?,
        created: r.get(6)?,
        updated: r.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::redis::testing::TempDir;

    fn store() -> (TempDir, Store) {
        let dir = TempDir::new("store");
        let s = Store::open(&dir.path().join("p.db")).unwrap();
        (dir, s)
    }

    #[test]
    fn developers_are_unique_by_email_and_the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, s) = store();
        let d = s
            .add_developer("a@example.com", "A", "h", 1)
            .unwrap()
            .unwrap();
        assert!(s
            .add_developer("a@example.com", "B", "h", 2)
            .unwrap()
            .is_none());
        assert_eq!(s.developer(d.id).unwrap().unwrap().name, "A");
        let (found, hash) = s.developer_by_email("a@example.com").unwrap().unwrap();
        assert_eq!((found.id, hash.as_str()), (d.id, "h"));
        let mode = std::fs::metadata(dir.path().join("p.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_newer_change_of_a_subscription_wins() {
        let (_d, s) = store();
        let mut sub = StoredSubscription {
            id: "starter-1".into(),
            owner: "a@example.com".into(),
            product: "starter".into(),
            state: SubState::Pending,
            primary_key: "p".into(),
            secondary_key: "s".into(),
            created: 1,
            updated: 10,
        };
        assert!(s.put_subscription(&sub).unwrap());
        sub.state = SubState::Active;
        sub.updated = 5;
        assert!(!s.put_subscription(&sub).unwrap());
        assert_eq!(
            s.subscription("starter-1").unwrap().unwrap().state,
            SubState::Pending
        );
        sub.updated = 11;
        assert!(s.put_subscription(&sub).unwrap());
        assert_eq!(
            s.subscriptions(Some("a@example.com")).unwrap()[0].state,
            SubState::Active
        );
        assert!(s.subscriptions(Some("b@example.com")).unwrap().is_empty());
    }

    #[test]
    fn usage_adds_up_per_day_and_sessions_expire() {
        let (_d, s) = store();
        s.add_usage("x", "2026-11-29", 3, 1).unwrap();
        s.add_usage("x", "2026-11-30", 2, 0).unwrap();
        s.add_usage("x", "2026-11-30", 5, 2).unwrap();
        s.add_usage("y", "2026-11-30", 1, 1).unwrap();
        let u = s.usage(&["x".into(), "y".into()], "2026-11-30").unwrap();
        assert_eq!(u, vec![("2026-11-30".to_string(), 8, 3)]);
        let session = Session {
            developer: None,
            csrf: "c".into(),
            expires: 100,
        };
        s.put_session(b"t", &session).unwrap();
        assert!(s.session(b"t", 50).unwrap().is_some());
        assert!(s.session(b"t", 100).unwrap().is_none());
        s.expire_sessions(200).unwrap();
    }
}
