//! Uploads kept with the tokens that read them, so those queries can be replayed.

use crate::Engine;
use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::RecordBatch;

use crate::error::Result;
use crate::plan::crossmatch::UPLOAD_SCHEMA;
use crate::session::tables;
use crate::tokens::checksum::Checksum;
use crate::tokens::state::{StateError, StateStore};
use crate::tokens::token::UploadRef;
use crate::upload::Upload;
impl Engine {
    /// The tables a query may name: the served ones and its uploads.
    // A Vec, not a slice: the parser takes `&dyn SchemaInfo`, which needs a sized type.
    #[allow(clippy::owned_cow)]
    pub(crate) fn tables_with<'a>(&'a self, uploads: &[Upload]) -> Cow<'a, Vec<adql::Table>> {
        if uploads.is_empty() {
            return Cow::Borrowed(&self.adql_tables);
        }
        let mut all = self.adql_tables.clone();
        for u in uploads {
            all.push(tables::in_memory_table(
                UPLOAD_SCHEMA,
                &u.name,
                &u.batch.schema(),
            ));
        }
        Cow::Owned(all)
    }

    /// The uploads a token's record names, from the state store.
    pub(crate) async fn load_uploads(
        &self,
        token: &str,
        refs: &[UploadRef],
    ) -> Result<Vec<Upload>> {
        let mut out = Vec::new();
        for r in refs {
            let key = format!("uploads/{}.parquet", r.digest);
            let bytes = self.state.read(&key).await?.ok_or_else(|| {
                crate::tokens::error::TokenError::UploadGone {
                    token: token.to_string(),
                    name: r.name.clone(),
                    store: self.state.url().to_string(),
                    key: key.clone(),
                }
            })?;
            let reader =
                datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                    bytes,
                )?
                .build()?;
            let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
            let schema = match batches.first() {
                Some(b) => b.schema(),
                None => {
                    return Err(StateError::EmptyUpload {
                        name: r.name.clone(),
                        key,
                    }
                    .into());
                }
            };
            out.push(Upload {
                name: r.name.clone(),
                batch: arrow::compute::concat_batches(&schema, &batches)?,
            });
        }
        Ok(out)
    }
}

/// What a token's record names of each upload: its name, content digest and rows.
pub(crate) fn upload_refs(uploads: &[Upload]) -> Result<Vec<UploadRef>> {
    uploads
        .iter()
        .map(|u| {
            Ok(UploadRef {
                name: u.name.clone(),
                digest: upload_digest(u)?,
                rows: u.batch.num_rows() as u64,
            })
        })
        .collect()
}

/// Keeps each upload in the state store (once per content), so that the
/// token that read it can be replayed. Done only as the token's record is
/// stored: a query that fails leaves nothing behind.
pub(crate) async fn keep_uploads(
    state: &StateStore,
    uploads: &[Upload],
    refs: &[UploadRef],
) -> Result<()> {
    for (u, r) in uploads.iter().zip(refs) {
        let key = format!("uploads/{}.parquet", r.digest);
        if !state.exists(&key).await? {
            let mut bytes = Vec::new();
            let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(
                &mut bytes,
                u.batch.schema(),
                None,
            )?;
            w.write(&u.batch)?;
            w.close()?;
            // Another query may have kept the same content meanwhile: either copy serves.
            state.create(&key, bytes.into()).await?;
        }
    }
    Ok(())
}

/// What identifies an upload's content: its name, columns and rows.
pub(crate) fn upload_digest(u: &Upload) -> Result<String> {
    let mut c = Checksum::new(true);
    let names: Vec<String> = u
        .batch
        .schema()
        .fields()
        .iter()
        .map(|f| format!("{}:{}", f.name(), f.data_type()))
        .collect();
    c.update(&RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("columns", arrow::datatypes::DataType::Utf8, false),
        ])),
        vec![Arc::new(arrow::array::StringArray::from(names))],
    )?);
    c.update(&u.batch);
    let text = c.finish();
    // "ordered:" + 32 hex digits: the hex names the stored file.
    Ok(text.rsplit(':').next().unwrap_or(&text).to_string())
}
