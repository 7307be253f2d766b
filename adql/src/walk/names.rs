//! Names: what a name the query uses is spelled like, and which table a
//! qualifier stands for (the first pass collects them, the second resolves).

use sqlparser::ast::Ident;

use crate::Error;
use crate::functions::nearest;

use super::*;

impl Walker<'_> {
    pub(super) fn collecting(&self) -> bool {
        self.pass == Pass::Collect
    }

    pub(super) fn define(&mut self, id: &Ident) {
        if self.collecting() {
            self.learn(&id.value);
        }
    }

    /// Records a name the query may use, in the spelling it was defined with.
    pub(super) fn learn(&mut self, spelling: &str) {
        let lower = spelling.to_lowercase();
        let all = self.spellings.entry(lower.clone()).or_default();
        if !all.iter().any(|s| s == spelling) {
            all.push(spelling.to_string());
        }
        self.names
            .entry(lower)
            .or_insert_with(|| spelling.to_string());
    }

    /// Gives the column of `qualifier.column` the spelling of that table's own
    /// column, when the qualifier names a table that has it: ADQL names ignore
    /// case, so `o.ra` is DiaObject's `ra` even when an upload beside it has
    /// `RA`. `false` when the qualifier says nothing about it.
    pub(super) fn resolve_qualified(&self, qualifier: &Ident, column: &mut Ident) -> Result<bool> {
        let Some(Some(i)) = self.qualifiers.get(&qualifier.value.to_lowercase()) else {
            return Ok(false);
        };
        let Some(own) = self.tables[*i]
            .columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(&column.value))
        else {
            return Ok(false);
        };
        if column.quote_style.is_some() && own.name != column.value {
            return Err(Error::at(
                column.span,
                format!(
                    "quoted name \"{}\" does not match the case of {}",
                    column.value, own.name
                ),
            )
            .hint(format!(
                "quoted names are exact: write \"{}\", or leave it unquoted",
                own.name
            )));
        }
        column.value = own.name.clone();
        Ok(true)
    }

    pub(super) fn check_alias(&self, id: &Ident) -> Result<()> {
        if id.quote_style.is_none() && RESERVED.contains(&id.value.to_uppercase().as_str()) {
            return Err(Error::at(
                id.span,
                format!(
                    "{} is a reserved word and cannot be used as a name",
                    id.value
                ),
            )
            .hint(format!("quote it (\"{}\") to use it as a name", id.value)));
        }
        Ok(())
    }

    /// Gives a name the spelling the schema or the query defined it with.
    pub(super) fn resolve(&self, id: &mut Ident) -> Result<()> {
        if self.collecting() {
            return Ok(());
        }
        self.check_alias(id)?;
        let lower = id.value.to_lowercase();
        match (id.quote_style, self.names.get(&lower)) {
            (None, Some(spelling)) => {
                id.value = spelling.clone();
                Ok(())
            }
            (Some(_), Some(spelling)) if *spelling == id.value => Ok(()),
            (Some(_), Some(_))
                if self
                    .spellings
                    .get(&lower)
                    .is_some_and(|all| all.contains(&id.value)) =>
            {
                Ok(())
            }
            (Some(_), Some(spelling)) => Err(Error::at(
                id.span,
                format!(
                    "quoted name \"{}\" does not match the case of {spelling}",
                    id.value
                ),
            )
            .hint(format!(
                "quoted names are exact: write \"{spelling}\", or leave it unquoted"
            ))),
            (_, None) => {
                let near = nearest(&id.value, self.columns.iter().map(String::as_str));
                let e = Error::at(id.span, format!("unknown column '{}'", id.value));
                Err(if near.is_empty() {
                    e
                } else {
                    e.hint(format!("did you mean {}?", near.join(", ")))
                })
            }
        }
    }
}
