//! The peers, DuckDB and PostgreSQL 15 + q3c, driven through `benches/peers.py`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const SCRIPT: &str = include_str!("../peers.py");

/// The Python that runs the peers' script.
pub struct Python {
    python: String,
    script: PathBuf,
    work: PathBuf,
}

/// A peer's answer: its rows' keys (sorted), and one time per timed run.
pub struct Timed {
    pub rows: usize,
    pub keys: Vec<String>,
    pub times: Vec<Duration>,
}

impl Python {
    /// Writes the script into the work folder.
    pub fn new(python: &str, work: &Path) -> Result<Python> {
        let script = work.join("peers.py");
        std::fs::write(&script, SCRIPT)?;
        Ok(Python {
            python: python.to_string(),
            script,
            work: work.to_path_buf(),
        })
    }

    /// Runs one command of the script and returns what it printed.
    pub fn call(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.python)
            .arg(&self.script)
            .args(args)
            .output()
            .with_context(|| {
                format!("running {} (are duckdb, psycopg and matplotlib installed? benches/run installs them)", self.python)
            })?;
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            bail!("peers.py {} failed", args.first().unwrap_or(&""));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Times `sql` in DuckDB (over the catalog's Parquet files).
    pub fn duckdb(
        &self,
        sql: &str,
        repeat: usize,
        budget: f64,
        upload: Option<&Path>,
    ) -> Result<Timed> {
        self.timed("duckdb", None, sql, repeat, budget, upload)
    }

    fn timed(
        &self,
        cmd: &str,
        port: Option<u16>,
        sql: &str,
        repeat: usize,
        budget: f64,
        upload: Option<&Path>,
    ) -> Result<Timed> {
        let keys = self.work.join(format!("keys-{cmd}.txt"));
        let (repeat, budget) = (repeat.to_string(), budget.to_string());
        let port = port.map(|p| p.to_string());
        let mut args: Vec<&str> = vec![cmd];
        if let Some(p) = &port {
            args.push(p);
        }
        args.extend([repeat.as_str(), budget.as_str(), sql, super::path(&keys)?]);
        if let Some(u) = upload {
            args.push(super::path(u)?);
        }
        let out = self.call(&args)?;
        let mut it = out.split_whitespace();
        let rows: usize = it.next().context("peer row count")?.parse()?;
        let times = it
            .map(|x| x.parse::<f64>().map(Duration::from_secs_f64))
            .collect::<Result<_, _>>()?;
        let text = std::fs::read_to_string(&keys)?;
        let keys = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        Ok(Timed { rows, keys, times })
    }
}

/// The Postgres peer's server on 127.0.0.1, stopped when dropped.
pub struct Postgres<'a> {
    python: &'a Python,
    work: PathBuf,
    pub port: u16,
}

impl<'a> Postgres<'a> {
    /// Starts the server (creating its data folder once) and loads the catalog's rows.
    pub fn start(
        python: &'a Python,
        work: &Path,
        port: u16,
        catalog: &Path,
    ) -> Result<Postgres<'a>> {
        let pg = Postgres {
            python,
            work: work.join("postgres"),
            port,
        };
        let p = port.to_string();
        python.call(&["start", super::path(&pg.work)?, &p])?;
        let t = Instant::now();
        python.call(&["load", super::path(&pg.work)?, &p, super::path(catalog)?])?;
        eprintln!("postgres ready in {:.1} s", t.elapsed().as_secs_f64());
        Ok(pg)
    }

    /// Times `sql` on one connection.
    pub fn run(
        &self,
        sql: &str,
        repeat: usize,
        budget: f64,
        upload: Option<&Path>,
    ) -> Result<Timed> {
        self.python
            .timed("run", Some(self.port), sql, repeat, budget, upload)
    }

    /// `clients` processes run queries from `mix` for `seconds`: each latency.
    pub fn load_test(&self, clients: usize, seconds: f64, mix: &[String]) -> Result<Vec<Duration>> {
        let file = self.python.work.join("mix.sql");
        std::fs::write(&file, mix.join("\n"))?;
        let out = self.python.call(&[
            "load-test",
            &self.port.to_string(),
            &clients.to_string(),
            &seconds.to_string(),
            super::path(&file)?,
        ])?;
        let mut it = out.split_whitespace().skip(1);
        Ok(it
            .by_ref()
            .map(|x| x.parse::<f64>().map(Duration::from_secs_f64))
            .collect::<Result<_, _>>()?)
    }
}

impl Drop for Postgres<'_> {
    fn drop(&mut self) {
        if let Ok(work) = super::path(&self.work) {
            let _ = self.python.call(&["stop", work]);
        }
    }
}
