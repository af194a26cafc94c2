//! The SQLite schema as numbered migrations. `PRAGMA user_version` holds the number of
//! migrations applied; opening a store applies the missing ones, each in its own
//! transaction, and refuses a database written by a newer build.
//!
//! Invariants the schema itself enforces (so no code path can break them):
//! - an annotator is assigned an item at most once: `UNIQUE(item_id, annotator_id)`;
//! - an item never has more live assignments than its overlap: triggers keep
//!   `items.assigned` equal to the number of non-skipped assignments and
//!   `CHECK (assigned <= overlap)` aborts any insert that would exceed it;
//! - an assignment has at most one live (not undone) vote: a partial unique index.

use rusqlite::Connection;

use crate::error::{AppError, Result};

const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
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
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database at `conn` up to [`SCHEMA_VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(AppError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        // PRAGMA does not take bound parameters; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", index + 1))?;
        tx.commit()?;
        tracing::info!(version = index + 1, "applied schema migration");
    }
    Ok(())
}
