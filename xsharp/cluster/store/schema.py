"""The store's tables: created when missing, each statement idempotent."""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, admin INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    label TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL, priority INTEGER NOT NULL,
    cpus REAL NOT NULL, gpus REAL NOT NULL,
    state TEXT NOT NULL, request TEXT,          -- request: pause | stop | preempt | yield, pending on a running job
    submitted REAL NOT NULL, queued_at REAL NOT NULL, started REAL, run_started REAL, finished REAL,
    runs INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
    progress TEXT, result TEXT, error TEXT,
    pids TEXT);                                 -- the job's processes while it runs (for GPU attribution)
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_user ON jobs(user);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL, ts REAL NOT NULL,
    kind TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_job ON events(job_id);
CREATE TABLE IF NOT EXISTS metrics (
    job_id INTEGER NOT NULL, ts REAL NOT NULL, phase TEXT NOT NULL, layer INTEGER, epoch INTEGER,
    step INTEGER, loss REAL, val_accuracy REAL, samples_per_second REAL);
CREATE INDEX IF NOT EXISTS metrics_job ON metrics(job_id);
CREATE TABLE IF NOT EXISTS imports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL, name TEXT NOT NULL, request TEXT NOT NULL,   -- request: the POST /v1/datasets body, as JSON
    state TEXT NOT NULL,                        -- QUEUED | RUNNING | DONE | FAILED | CANCELLED
    done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0, unit TEXT NOT NULL DEFAULT '',
    message TEXT, ref TEXT,                     -- ref: owner/name@version, once DONE
    created REAL NOT NULL, started REAL, finished REAL);
CREATE INDEX IF NOT EXISTS imports_user ON imports(user);
CREATE INDEX IF NOT EXISTS imports_state ON imports(state);
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
    job_id INTEGER NOT NULL, path TEXT NOT NULL, -- path: the model file, relative to the job's folder
    dataset TEXT, dataset_version TEXT, data_path TEXT,
    spec TEXT NOT NULL, metrics TEXT,           -- the job's spec (as stored) and result, as JSON
    created REAL NOT NULL, deleted REAL);       -- deleted: a tombstone, so a backfill never brings it back
CREATE UNIQUE INDEX IF NOT EXISTS models_job ON models(job_id);
CREATE TABLE IF NOT EXISTS usage (                -- each user's decayed resource-seconds (cluster/usage.py), as of as_of
    user TEXT PRIMARY KEY, cpu_seconds REAL NOT NULL, gpu_seconds REAL NOT NULL, as_of REAL NOT NULL);
CREATE INDEX IF NOT EXISTS models_user_name ON models(user, name);
"""
