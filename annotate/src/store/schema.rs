//! The SQLite schema as numbered migrations. `PRAGMA user_version` holds the number of
//! migrations applied; opening a store applies the missing ones, each in its own
//! transaction, and refuses a database written by a newer build.
//!
//! Invariants the schema itself enforces (so no code path can break them):
//! - an annotator is assigned an item at most once: `UNIQUE(item_id, annotator_id)`;
//! - an item never has more live assignments than its overlap: triggers keep
//!   `items.assigned` equal to the number of non-skipped assignments and
//!   `CHECK (assigned <= overlap)` aborts any insert that would exceed it;
//! - an assignment has at most one live (not undone) vote: a partial unique index;
//! - an assignment's release reason (`lease`, `withdrawn`) only goes with `skipped`.
//!
//! A migration is SQL plus, where SQL cannot compute a value (sha256 of consent texts),
//! a Rust step run in the same transaction.

use rusqlite::Connection;

use super::db::{params, Db};
use crate::error::{AppError, Result};
use crate::util::sha256_hex;

/// One schema step: SQL, then an optional Rust fix-up in the same transaction. The
/// PostgreSQL backend has the same steps in its dialect (`schema_pg.rs`).
pub(super) struct Migration {
    pub(super) sql: &'static str,
    pub(super) after: Option<fn(&Db) -> Result<()>>,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        sql: V1,
        after: None,
    },
    Migration {
        sql: V2,
        after: Some(hash_consent_texts),
    },
    Migration {
        sql: V3,
        after: None,
    },
    Migration {
        sql: V4,
        after: None,
    },
];

// 1: the initial schema.
const V1: &str = r#"
    CREATE TABLE admin_tokens (
        id          INTEGER PRIMARY KEY,
        token_hash  TEXT NOT NULL UNIQUE,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE campaigns (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        guidelines  TEXT NOT NULL,
        consent     TEXT NOT NULL,
        overlap     INTEGER NOT NULL CHECK (overlap >= 1),
        created_at  INTEGER NOT NULL,
        -- Items that have answers and free slots, kept by the triggers below so that
        -- progress costs O(1) however many items a campaign holds.
        open_items  INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE annotators (
        id          INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
        name        TEXT NOT NULL,
        token_hash  TEXT NOT NULL UNIQUE,
        pseudonym   TEXT NOT NULL UNIQUE,
        consent_at  INTEGER,
        created_at  INTEGER NOT NULL,
        -- Open items this annotator already holds (any status), kept by triggers:
        -- what they can still be given is campaigns.open_items - open_held.
        open_held   INTEGER NOT NULL DEFAULT 0,
        UNIQUE (campaign_id, name)
    );
    CREATE TABLE items (
        id           INTEGER PRIMARY KEY,
        campaign_id  INTEGER NOT NULL REFERENCES campaigns(id),
        external_id  TEXT,
        prompt_json  TEXT NOT NULL,
        -- The two candidate answers; NULL until generated for prompt-only uploads.
        model_1      TEXT,
        answer_1     TEXT,
        model_2      TEXT,
        answer_2     TEXT,
        overlap      INTEGER NOT NULL CHECK (overlap >= 1),
        assigned     INTEGER NOT NULL DEFAULT 0 CHECK (assigned >= 0 AND assigned <= overlap),
        created_at   INTEGER NOT NULL,
        CHECK ((answer_1 IS NULL) = (answer_2 IS NULL))
    );
    -- Only items that can still be handed out: filled items drop out of the index, so
    -- finding the next item stays cheap however many are done.
    CREATE INDEX items_open ON items (campaign_id, assigned DESC, id)
        WHERE answer_1 IS NOT NULL AND assigned < overlap;
    CREATE TRIGGER item_added AFTER INSERT ON items
        WHEN NEW.answer_1 IS NOT NULL AND NEW.assigned < NEW.overlap
    BEGIN
        UPDATE campaigns SET open_items = open_items + 1 WHERE id = NEW.campaign_id;
    END;
    CREATE TRIGGER item_changed AFTER UPDATE OF answer_1, assigned ON items
        WHEN (OLD.answer_1 IS NOT NULL AND OLD.assigned < OLD.overlap)
          != (NEW.answer_1 IS NOT NULL AND NEW.assigned < NEW.overlap)
    BEGIN
        UPDATE campaigns
        SET open_items = open_items + (CASE WHEN NEW.answer_1 IS NOT NULL AND NEW.assigned < NEW.overlap
                                            THEN 1 ELSE -1 END)
        WHERE id = NEW.campaign_id;
        UPDATE annotators
        SET open_held = open_held + (CASE WHEN NEW.answer_1 IS NOT NULL AND NEW.assigned < NEW.overlap
                                          THEN 1 ELSE -1 END)
        WHERE id IN (SELECT annotator_id FROM assignments WHERE item_id = NEW.id);
    END;
    CREATE TABLE assignments (
        id           INTEGER PRIMARY KEY,
        item_id      INTEGER NOT NULL REFERENCES items(id),
        annotator_id INTEGER NOT NULL REFERENCES annotators(id),
        -- 1 when answer_2 is shown on the left (as "A"); randomized per assignment.
        swapped      INTEGER NOT NULL CHECK (swapped IN (0, 1)),
        status       TEXT NOT NULL CHECK (status IN ('pending', 'voted', 'skipped')),
        assigned_at  INTEGER NOT NULL,
        UNIQUE (item_id, annotator_id)
    );
    CREATE INDEX assignments_by_annotator ON assignments (annotator_id, status);
    -- One trigger, two steps in this order: count the item as held while it is still
    -- open, then take the slot (which, if it fills the item, makes item_changed
    -- uncount it for every holder, this annotator included).
    CREATE TRIGGER assignment_taken AFTER INSERT ON assignments
    BEGIN
        UPDATE annotators SET open_held = open_held + 1
        WHERE id = NEW.annotator_id AND EXISTS (
            SELECT 1 FROM items WHERE id = NEW.item_id AND answer_1 IS NOT NULL AND assigned < overlap);
        UPDATE items SET assigned = assigned + 1 WHERE id = NEW.item_id AND NEW.status != 'skipped';
    END;
    CREATE TRIGGER assignment_released AFTER UPDATE OF status ON assignments
        WHEN NEW.status = 'skipped' AND OLD.status != 'skipped'
    BEGIN
        UPDATE items SET assigned = assigned - 1 WHERE id = NEW.item_id;
    END;
    CREATE TRIGGER assignment_retaken AFTER UPDATE OF status ON assignments
        WHEN OLD.status = 'skipped' AND NEW.status != 'skipped'
    BEGIN
        UPDATE items SET assigned = assigned + 1 WHERE id = NEW.item_id;
    END;
    CREATE TABLE votes (
        id            INTEGER PRIMARY KEY,
        assignment_id INTEGER NOT NULL REFERENCES assignments(id),
        item_id       INTEGER NOT NULL REFERENCES items(id),
        annotator_id  INTEGER NOT NULL REFERENCES annotators(id),
        -- In terms of the stored answers: 'first' = answer_1 preferred.
        choice        TEXT NOT NULL CHECK (choice IN ('first', 'second', 'tie', 'both_bad')),
        -- What the annotator clicked, in terms of what they saw ('A' = left).
        shown_choice  TEXT NOT NULL CHECK (shown_choice IN ('A', 'B', 'tie', 'both_bad')),
        strength      TEXT CHECK (strength IN ('slight', 'clear', 'strong')),
        rationale     TEXT,
        created_at    INTEGER NOT NULL,
        undone_at     INTEGER
    );
    CREATE UNIQUE INDEX one_live_vote ON votes (assignment_id) WHERE undone_at IS NULL;
    CREATE INDEX votes_by_item ON votes (item_id);
"#;

// 2: leases, consent versions and withdrawals, gold items, re-queueing.
const V2: &str = r#"
    -- Leases: a pending assignment untouched for the lease is released to the queue.
    ALTER TABLE assignments ADD COLUMN touched_at INTEGER;
    UPDATE assignments SET touched_at = assigned_at;
    -- Why a skipped assignment was released when the annotator did not skip it.
    ALTER TABLE assignments ADD COLUMN released TEXT
        CHECK (released IS NULL OR (released IN ('lease', 'withdrawn') AND status = 'skipped'));
    CREATE INDEX assignments_lease ON assignments (touched_at) WHERE status = 'pending';

    -- Gold items: the known outcome, in terms of the stored answers.
    ALTER TABLE items ADD COLUMN gold TEXT CHECK (gold IN ('first', 'second', 'tie', 'both_bad'));
    -- Re-queueing raises an item's overlap, which must reopen it like a freed slot does.
    DROP TRIGGER item_changed;
    CREATE TRIGGER item_changed AFTER UPDATE OF answer_1, assigned, overlap ON items
        WHEN (OLD.answer_1 IS NOT NULL AND OLD.assigned < OLD.overlap)
          != (NEW.answer_1 IS NOT NULL AND NEW.assigned < NEW.overlap)
    BEGIN
        UPDATE campaigns
        SET open_items = open_items + (CASE WHEN NEW.answer_1 IS NOT NULL AND NEW.assigned < NEW.overlap
                                            THEN 1 ELSE -1 END)
        WHERE id = NEW.campaign_id;
        UPDATE annotators
        SET open_held = open_held + (CASE WHEN NEW.answer_1 IS NOT NULL AND NEW.assigned < NEW.overlap
                                          THEN 1 ELSE -1 END)
        WHERE id IN (SELECT annotator_id FROM assignments WHERE item_id = NEW.id);
    END;

    -- Campaign policy.
    ALTER TABLE campaigns ADD COLUMN consent_version INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE campaigns ADD COLUMN on_withdrawal TEXT NOT NULL DEFAULT 'keep'
        CHECK (on_withdrawal IN ('keep', 'erase'));
    ALTER TABLE campaigns ADD COLUMN min_gold_accuracy REAL
        CHECK (min_gold_accuracy IS NULL OR (min_gold_accuracy >= 0 AND min_gold_accuracy <= 1));
    -- Every consent statement a campaign has shown, by version.
    CREATE TABLE consent_versions (
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
        version     INTEGER NOT NULL CHECK (version >= 1),
        text        TEXT NOT NULL,
        sha256      TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (campaign_id, version)
    );
    INSERT INTO consent_versions (campaign_id, version, text, sha256, created_at)
        SELECT id, 1, consent, '', created_at FROM campaigns;

    -- An annotator's latest acceptance (consent_at is its time) and, once withdrawn, when.
    ALTER TABLE annotators ADD COLUMN consent_version INTEGER;
    ALTER TABLE annotators ADD COLUMN consent_sha256 TEXT;
    ALTER TABLE annotators ADD COLUMN withdrawn_at INTEGER;
    UPDATE annotators SET consent_version = 1 WHERE consent_at IS NOT NULL;
    -- Every acceptance, for the audit trail.
    CREATE TABLE consent_acceptances (
        id           INTEGER PRIMARY KEY,
        annotator_id INTEGER NOT NULL REFERENCES annotators(id),
        version      INTEGER NOT NULL,
        sha256       TEXT NOT NULL,
        accepted_at  INTEGER NOT NULL
    );
    INSERT INTO consent_acceptances (annotator_id, version, sha256, accepted_at)
        SELECT id, 1, '', consent_at FROM annotators WHERE consent_at IS NOT NULL;
    -- The consent version each vote was cast under.
    ALTER TABLE votes ADD COLUMN consent_version INTEGER;
    UPDATE votes SET consent_version = 1;

    -- What a withdrawal covered; kept even when the votes themselves are erased.
    CREATE TABLE withdrawals (
        id            INTEGER PRIMARY KEY,
        annotator_id  INTEGER NOT NULL UNIQUE REFERENCES annotators(id),
        pseudonym     TEXT NOT NULL,
        withdrawn_at  INTEGER NOT NULL,
        recorded_by   TEXT NOT NULL CHECK (recorded_by IN ('annotator', 'admin')),
        erased        INTEGER NOT NULL CHECK (erased IN (0, 1)),
        -- JSON array of the vote ids it covered (undone ones included).
        vote_ids      TEXT NOT NULL,
        first_vote_at INTEGER,
        last_vote_at  INTEGER
    );
"#;

// 3: arena campaigns (`arena.rs`): the models a campaign asks, and who wrote a prompt.
const V3: &str = r#"
    -- An arena campaign's endpoints and limits (`ArenaConfig` as JSON, API keys included:
    -- the file is 0600 like everything else in it). A campaign with a row is an arena.
    CREATE TABLE arena_configs (
        campaign_id INTEGER PRIMARY KEY REFERENCES campaigns(id),
        config_json TEXT NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    -- The annotator who typed an arena item's prompt (NULL for uploaded items).
    ALTER TABLE items ADD COLUMN author_id INTEGER REFERENCES annotators(id);
"#;

// 4: arena battles stay their author's; each annotator's assignments counted by status,
// kept by triggers like `open_held`, so that the progress every `next` reports is O(1)
// and not a count over all of their work (on PostgreSQL that count was a quarter of a
// `next`'s time: MVCC visibility checks on every row).
const V4: &str = r#"
    -- An arena battle keeps its author's slot when their lease runs out or they skip it:
    -- its prompt is what they typed, so it never goes to anyone else, and their late vote
    -- takes it back.
    DROP TRIGGER assignment_released;
    CREATE TRIGGER assignment_released AFTER UPDATE OF status ON assignments
        WHEN NEW.status = 'skipped' AND OLD.status != 'skipped'
    BEGIN
        UPDATE items SET assigned = assigned - 1 WHERE id = NEW.item_id AND author_id IS NULL;
    END;
    DROP TRIGGER assignment_retaken;
    CREATE TRIGGER assignment_retaken AFTER UPDATE OF status ON assignments
        WHEN OLD.status = 'skipped' AND NEW.status != 'skipped'
    BEGIN
        UPDATE items SET assigned = assigned + 1 WHERE id = NEW.item_id AND author_id IS NULL;
    END;
    ALTER TABLE annotators ADD COLUMN voted_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE annotators ADD COLUMN skipped_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE annotators ADD COLUMN pending_count INTEGER NOT NULL DEFAULT 0;
    UPDATE annotators SET
        voted_count = (SELECT COUNT(*) FROM assignments a
                       WHERE a.annotator_id = annotators.id AND a.status = 'voted'),
        skipped_count = (SELECT COUNT(*) FROM assignments a
                         WHERE a.annotator_id = annotators.id AND a.status = 'skipped'),
        pending_count = (SELECT COUNT(*) FROM assignments a
                         WHERE a.annotator_id = annotators.id AND a.status = 'pending');
    CREATE TRIGGER assignment_counted AFTER INSERT ON assignments
    BEGIN
        UPDATE annotators SET
            voted_count = voted_count + (NEW.status = 'voted'),
            skipped_count = skipped_count + (NEW.status = 'skipped'),
            pending_count = pending_count + (NEW.status = 'pending')
        WHERE id = NEW.annotator_id;
    END;
    CREATE TRIGGER assignment_recounted AFTER UPDATE OF status ON assignments
        WHEN OLD.status != NEW.status
    BEGIN
        UPDATE annotators SET
            voted_count = voted_count + (NEW.status = 'voted') - (OLD.status = 'voted'),
            skipped_count = skipped_count + (NEW.status = 'skipped') - (OLD.status = 'skipped'),
            pending_count = pending_count + (NEW.status = 'pending') - (OLD.status = 'pending')
        WHERE id = NEW.annotator_id;
    END;
    CREATE TRIGGER assignment_uncounted AFTER DELETE ON assignments
    BEGIN
        UPDATE annotators SET
            voted_count = voted_count - (OLD.status = 'voted'),
            skipped_count = skipped_count - (OLD.status = 'skipped'),
            pending_count = pending_count - (OLD.status = 'pending')
        WHERE id = OLD.annotator_id;
    END;
"#;

/// Fills the sha256 of the consent texts copied by migration 2.
pub(super) fn hash_consent_texts(tx: &Db) -> Result<()> {
    let texts: Vec<(i64, String)> = tx.query_map(
        "SELECT campaign_id, text FROM consent_versions WHERE sha256 = ''",
        params![],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    for (campaign_id, text) in texts {
        let sha = sha256_hex(text.as_bytes());
        tx.execute(
            "UPDATE consent_versions SET sha256 = ?2 WHERE campaign_id = ?1 AND version = 1",
            params![campaign_id, sha],
        )?;
        tx.execute(
            "UPDATE annotators SET consent_sha256 = ?2 WHERE campaign_id = ?1 AND consent_version = 1",
            params![campaign_id, sha],
        )?;
        tx.execute(
            "UPDATE consent_acceptances SET sha256 = ?2 WHERE sha256 = '' AND annotator_id IN
             (SELECT id FROM annotators WHERE campaign_id = ?1)",
            params![campaign_id, sha],
        )?;
    }
    Ok(())
}

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

// Both backends have every migration.
const _: () = assert!(super::schema_pg::MIGRATIONS.len() == MIGRATIONS.len());

/// The schema version the SQLite database at `conn` has.
pub fn version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}

/// The schema version of the database behind `db`, whichever the backend.
pub(crate) fn current(db: &Db) -> Result<i64> {
    match db {
        Db::Lite(conn) => version(conn),
        Db::Pg(_) => super::schema_pg::version(db),
    }
}

/// Brings the database at `conn` up to [`SCHEMA_VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Brings the database at `conn` up to `target` (at most [`SCHEMA_VERSION`]); tests use
/// it to build a database as an older release wrote it.
pub fn migrate_to(conn: &mut Connection, target: i64) -> Result<()> {
    let found = version(conn)?;
    if found > SCHEMA_VERSION || target > SCHEMA_VERSION {
        return Err(AppError::SchemaTooNew {
            found: found.max(target),
            supported: SCHEMA_VERSION,
        });
    }
    let wanted = MIGRATIONS.iter().enumerate().take(target.max(0) as usize);
    for (index, migration) in wanted.skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(migration.sql)?;
        if let Some(after) = migration.after {
            after(&Db::Lite(&tx))?;
        }
        // PRAGMA does not take bound parameters; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", index + 1))?;
        tx.commit()?;
        tracing::info!(version = index + 1, "applied schema migration");
    }
    Ok(())
}
