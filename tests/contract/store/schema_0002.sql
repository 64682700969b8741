-- The schema of a database at revision 0002 (before ids were made never-reused),
-- as SQLite stored it: the upgrade test builds an old database from this.
CREATE TABLE pins (
	id INTEGER NOT NULL, 
	content_hash VARCHAR(64) NOT NULL, 
	phash VARCHAR(16) DEFAULT '' NOT NULL, 
	title TEXT DEFAULT '' NOT NULL, 
	description TEXT DEFAULT '' NOT NULL, 
	link TEXT DEFAULT '' NOT NULL, 
	board TEXT DEFAULT '' NOT NULL, 
	tags JSON NOT NULL, 
	labels JSON NOT NULL, 
	attributes JSON NOT NULL, 
	source TEXT DEFAULT '' NOT NULL, 
	width INTEGER DEFAULT '0' NOT NULL, 
	height INTEGER DEFAULT '0' NOT NULL, 
	format VARCHAR(16) DEFAULT '' NOT NULL, 
	dup_group INTEGER, 
	thumbnail BLOB, 
	created_at VARCHAR(32) NOT NULL, 
	updated_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (content_hash)
);
CREATE INDEX ix_pins_board ON pins (board);
CREATE INDEX ix_pins_phash ON pins (phash);
CREATE TABLE changes (
	seq INTEGER NOT NULL, 
	pin_id INTEGER NOT NULL, 
	op VARCHAR(8) NOT NULL, 
	PRIMARY KEY (seq)
);
CREATE TABLE sources (
	ref TEXT NOT NULL, 
	content_hash VARCHAR(64) NOT NULL, 
	pin_id INTEGER, 
	PRIMARY KEY (ref)
);
CREATE TABLE ingest_runs (
	id VARCHAR(32) NOT NULL, 
	source TEXT NOT NULL, 
	started_at VARCHAR(32) NOT NULL, 
	finished_at VARCHAR(32), 
	status VARCHAR(16) NOT NULL, 
	counts JSON NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE quarantine (
	id INTEGER NOT NULL, 
	run_id VARCHAR(32) NOT NULL, 
	source TEXT NOT NULL, 
	reason VARCHAR(32) NOT NULL, 
	message TEXT NOT NULL, 
	created_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (id)
);
CREATE INDEX ix_quarantine_run_id ON quarantine (run_id);
CREATE TABLE tokens (
	id INTEGER NOT NULL, 
	name TEXT NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	token_hash VARCHAR(64) NOT NULL, 
	created_at VARCHAR(32) NOT NULL, 
	revoked_at VARCHAR(32), 
	PRIMARY KEY (id), 
	UNIQUE (token_hash)
);
CREATE TABLE audit_log (
	id INTEGER NOT NULL, 
	at VARCHAR(32) NOT NULL, 
	token_id INTEGER, 
	role VARCHAR(16) NOT NULL, 
	action TEXT NOT NULL, 
	target TEXT NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE kv (
	"key" VARCHAR(128) NOT NULL, 
	value JSON NOT NULL, 
	PRIMARY KEY ("key")
);
CREATE TABLE vectors (
	pin_id INTEGER NOT NULL, 
	space VARCHAR(16) NOT NULL, 
	model_id VARCHAR(64) NOT NULL, 
	dim INTEGER NOT NULL, 
	data BLOB NOT NULL, 
	PRIMARY KEY (pin_id, space), 
	FOREIGN KEY(pin_id) REFERENCES pins (id) ON DELETE CASCADE
);
CREATE VIRTUAL TABLE pins_fts USING fts5(title, description, tags, tokenize='porter unicode61 remove_diacritics 2');
CREATE TABLE users (
	id INTEGER NOT NULL, 
	handle VARCHAR(64) NOT NULL, 
	name TEXT DEFAULT '' NOT NULL, 
	created_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (handle)
);
CREATE TABLE events (
	id INTEGER NOT NULL, 
	"key" VARCHAR(64) NOT NULL, 
	user_id INTEGER NOT NULL, 
	pin_id INTEGER NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	ts FLOAT NOT NULL, 
	dwell_ms FLOAT DEFAULT '0' NOT NULL, 
	surface VARCHAR(32) DEFAULT '' NOT NULL, 
	position INTEGER, 
	request_id VARCHAR(64) DEFAULT '' NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE ("key")
);
CREATE INDEX ix_events_user_ts ON events (user_id, ts);
CREATE INDEX ix_events_pin ON events (pin_id);
CREATE TABLE boards (
	id INTEGER NOT NULL, 
	user_id INTEGER NOT NULL, 
	name TEXT NOT NULL, 
	description TEXT DEFAULT '' NOT NULL, 
	created_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_board_user_name UNIQUE (user_id, name), 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE TABLE board_pins (
	board_id INTEGER NOT NULL, 
	pin_id INTEGER NOT NULL, 
	saved_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (board_id, pin_id), 
	FOREIGN KEY(board_id) REFERENCES boards (id) ON DELETE CASCADE, 
	FOREIGN KEY(pin_id) REFERENCES pins (id) ON DELETE CASCADE
);
CREATE INDEX ix_board_pins_pin ON board_pins (pin_id);
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));
INSERT INTO alembic_version VALUES ('0002');
