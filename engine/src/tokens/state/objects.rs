//! The store as plain objects under keys: what TAP jobs, uploads and the
//! server secret are kept as.

use super::*;

impl StateStore {
    /// The bytes at `key`, or `None` if there are none.
    pub async fn read(&self, key: &str) -> Result<Option<Bytes>> {
        check_key(key)?;
        match self.loc.store.get(&self.loc.child(key)).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(store_err)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(e)),
        }
    }

    /// Whether something is kept at `key`.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        match self.loc.store.head(&self.loc.child(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_err(e)),
        }
    }

    /// The bytes at `key` as a stream (for results too large to hold), or `None`.
    pub async fn read_stream(
        &self,
        key: &str,
    ) -> Result<Option<BoxStream<'static, std::result::Result<Bytes, std::io::Error>>>> {
        check_key(key)?;
        match self.loc.store.get(&self.loc.child(key)).await {
            Ok(r) => Ok(Some(Box::pin(
                r.into_stream().map_err(std::io::Error::other),
            ))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(e)),
        }
    }

    /// The secret tokens are keyed with: made once per state store (32 random
    /// bytes at `secret`), and shared by every process that uses the store, so
    /// that they all give a request the same token and nobody else can.
    pub async fn secret(&self) -> Result<Vec<u8>> {
        const KEY: &str = "secret";
        if let Some(b) = self.read(KEY).await? {
            return Ok(b.to_vec());
        }
        let mut fresh = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut fresh)
            .map_err(|_| StateError::NoRandomness)?;
        // Never refused for room: without it no query could be answered.
        if self
            .create_at(&self.loc.child(KEY), Bytes::from(fresh.to_vec()), false)
            .await?
        {
            return Ok(fresh.to_vec());
        }
        // Another process made it first: theirs is the one.
        self.read(KEY)
            .await?
            .map(|b| b.to_vec())
            .ok_or_else(|| StateError::SecretVanished.into())
    }

    /// Writes `key` only if nothing is there yet: `false` when another writer,
    /// in this process or any other on the store, was first.
    pub async fn create(&self, key: &str, bytes: Bytes) -> Result<bool> {
        check_key(key)?;
        self.create_at(&self.loc.child(key), bytes, true).await
    }

    /// Replaces the bytes at `key`. Counted but never refused for room: what is
    /// replaced (a job's record as its phase changes) was admitted when it was
    /// made, and must be able to say how it ended. Make new things with
    /// [`StateStore::create`] or check [`StateStore::check_room`] first.
    pub async fn write(&self, key: &str, bytes: Bytes) -> Result<()> {
        check_key(key)?;
        let path = self.loc.child(key);
        let len = bytes.len() as u64;
        // What is replaced is given back: counting every rewrite of a job's
        // record in full let a few rewrites make the store look full.
        let replaced = match &self.budget {
            None => 0,
            Some(_) => match self.loc.store.head(&path).await {
                Ok(meta) => meta.size,
                Err(object_store::Error::NotFound { .. }) => 0,
                Err(e) => return Err(store_err(e)),
            },
        };
        self.loc
            .store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(store_err)?;
        if let Some(b) = &self.budget {
            b.count(len);
            b.release(replaced);
        }
        Ok(())
    }

    /// The bytes held under `prefix` (a folder-like key), from a listing.
    pub async fn size_under(&self, prefix: &str) -> Result<u64> {
        check_key(prefix)?;
        let mut listing = self.loc.store.list(Some(&self.loc.child(prefix)));
        let mut size = 0u64;
        while let Some(meta) = listing.try_next().await.map_err(store_err)? {
            size = size.saturating_add(meta.size);
        }
        Ok(size)
    }

    /// Starts writing `key` piece by piece (a multipart upload for large
    /// objects); each piece counts against the budget as it is written.
    pub fn writer(&self, key: &str) -> Result<StateWriter> {
        check_key(key)?;
        self.check_room(1)?;
        let store: Arc<dyn ObjectStore> = self.loc.store.clone();
        Ok(StateWriter {
            inner: BufWriter::new(store, self.loc.child(key)),
            budget: self.budget.clone(),
            written: 0,
        })
    }

    /// Deletes everything under `prefix` (a folder-like key).
    pub async fn remove_all(&self, prefix: &str) -> Result<()> {
        check_key(prefix)?;
        let metas: Vec<_> = self
            .loc
            .store
            .list(Some(&self.loc.child(prefix)))
            .try_collect()
            .await
            .map_err(store_err)?;
        for m in metas {
            match self.loc.store.delete(&m.location).await {
                Ok(()) => self.release(m.size),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_err(e)),
            }
        }
        Ok(())
    }

    /// The names directly under `prefix` (one level, like `ls`).
    pub async fn children(&self, prefix: &str) -> Result<Vec<String>> {
        check_key(prefix)?;
        let listing = self
            .loc
            .store
            .list_with_delimiter(Some(&self.loc.child(prefix)))
            .await
            .map_err(store_err)?;
        let mut out: Vec<String> = listing
            .common_prefixes
            .iter()
            .chain(listing.objects.iter().map(|m| &m.location))
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        out.sort();
        Ok(out)
    }
}

/// An object being written to the state store piece by piece.
pub struct StateWriter {
    inner: BufWriter,
    budget: Option<Arc<Budget>>,
    written: u64,
}

impl StateWriter {
    /// Appends bytes, or refuses with [`Error::StateFull`] if they do not fit.
    pub async fn put(&mut self, bytes: Bytes) -> Result<()> {
        if let Some(b) = &self.budget {
            b.charge(bytes.len() as u64)?;
        }
        self.written += bytes.len() as u64;
        self.inner.put(bytes).await.map_err(store_err)
    }

    /// Completes the object.
    pub async fn finish(mut self) -> Result<()> {
        self.inner.shutdown().await.map_err(|e| {
            StateError::Incomplete {
                reason: e.to_string(),
            }
            .into()
        })
    }

    /// Abandons the object, removing what was uploaded.
    pub async fn abort(mut self) -> Result<()> {
        if let Some(b) = &self.budget {
            b.release(self.written);
        }
        self.inner.abort().await.map_err(store_err)
    }
}
