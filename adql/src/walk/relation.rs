//! FROM: tables, aliases, joins, subqueries, and time travel
//! (`FOR SYSTEM_TIME AS OF`).

use sqlparser::ast::{
    Expr, Ident, Join, JoinConstraint, ObjectName, ObjectNamePart, Spanned, TableAlias,
    TableFactor, TableVersion, TableWithJoins, Value, ValueWithSpan,
};
use sqlparser::tokenizer::Span;

use crate::functions::nearest;
use crate::{AsOf, Error, Table};

use super::*;

impl Walker<'_> {
    pub(super) fn object_name(&self, name: &mut ObjectName) -> Result<()> {
        for part in &mut name.0 {
            match part {
                ObjectNamePart::Identifier(id) => self.resolve(id)?,
                ObjectNamePart::Function(f) => return Err(not_adql(f.name.span, "this name")),
            }
        }
        Ok(())
    }

    pub(super) fn table_alias(&mut self, alias: &TableAlias) -> Result<()> {
        self.check_alias(&alias.name)?;
        self.define(&alias.name);
        for c in &alias.columns {
            if c.data_type.is_some() {
                return Err(not_adql(c.name.span, "a typed column alias"));
            }
            self.check_alias(&c.name)?;
            self.define(&c.name);
        }
        Ok(())
    }

    /// The catalog tables of a FROM clause a wildcard (qualified by an alias or
    /// table name, or not) selects from, after the clause was rewritten.
    /// Derived tables and common table expressions are left out: their columns
    /// are the planner's to know.
    pub(super) fn tables_of(
        &self,
        from: &[TableWithJoins],
        qualifier: Option<&Ident>,
    ) -> Vec<&Table> {
        fn factors<'f>(twj: &'f TableWithJoins, out: &mut Vec<&'f TableFactor>) {
            for f in std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)) {
                match f {
                    TableFactor::NestedJoin {
                        table_with_joins,
                        alias: None,
                    } => factors(table_with_joins, out),
                    other => out.push(other),
                }
            }
        }
        let mut all = Vec::new();
        for twj in from {
            factors(twj, &mut all);
        }
        all.into_iter()
            .filter_map(|f| {
                let TableFactor::Table { name, alias, .. } = f else {
                    return None;
                };
                let [schema, table] = name.0.as_slice() else {
                    return None;
                };
                let (schema, table) = (schema.as_ident()?, table.as_ident()?);
                let found = self
                    .tables
                    .iter()
                    .find(|t| t.schema == schema.value && t.name == table.value)?;
                match qualifier {
                    None => Some(found),
                    Some(q) => {
                        let own = alias.as_ref().map_or(table, |a| &a.name);
                        own.value.eq_ignore_ascii_case(&q.value).then_some(found)
                    }
                }
            })
            .collect()
    }

    pub(super) fn table_with_joins(&mut self, twj: &mut TableWithJoins) -> Result<()> {
        self.table_factor(&mut twj.relation)?;
        for j in &mut twj.joins {
            self.join(j)?;
        }
        Ok(())
    }

    pub(super) fn join(&mut self, j: &mut Join) -> Result<()> {
        let span = j.relation.span();
        if j.global {
            return Err(not_adql(span, "GLOBAL JOIN"));
        }
        self.table_factor(&mut j.relation)?;
        let cross = matches!(j.join_operator, sqlparser::ast::JoinOperator::CrossJoin(_));
        let Some(constraint) = adql_join_constraint!(&mut j.join_operator) else {
            return Err(not_adql(span, "this kind of join"));
        };
        if matches!(constraint, JoinConstraint::None) && !cross {
            return Err(Error::at(span, "a JOIN needs ON or USING").hint(
                "join on a condition (JOIN t ON ...), on common columns (USING (...) or \
                 NATURAL JOIN), or write CROSS JOIN for every pair of rows",
            ));
        }
        match constraint {
            JoinConstraint::On(e) => {
                check_condition(e)?;
                self.expr(e)
            }
            JoinConstraint::Using(names) => {
                for n in names {
                    self.object_name(n)?;
                }
                Ok(())
            }
            JoinConstraint::Natural | JoinConstraint::None => Ok(()),
        }
    }

    pub(super) fn table_factor(&mut self, t: &mut TableFactor) -> Result<()> {
        match t {
            TableFactor::Table {
                name,
                alias,
                args,
                with_hints,
                version,
                with_ordinality,
                partitions,
                json_path,
                sample,
                index_hints,
            } => {
                let span = name.span();
                if args.is_some() {
                    return Err(Error::at(
                        span,
                        format!("table functions such as {name}(...) are not part of ADQL"),
                    )
                    .hint("name a table, e.g. ppdb.DiaObject"));
                }
                if !with_hints.is_empty()
                    || *with_ordinality
                    || !partitions.is_empty()
                    || json_path.is_some()
                    || sample.is_some()
                    || !index_hints.is_empty()
                {
                    return Err(not_adql(span, "this table option"));
                }
                if let Some(a) = alias {
                    self.table_alias(a)?;
                }
                if let Some(v) = version.take() {
                    self.as_of(v)?;
                }
                let mut parts = Vec::with_capacity(name.0.len());
                for p in &name.0 {
                    match p {
                        ObjectNamePart::Identifier(id) => parts.push(id.clone()),
                        ObjectNamePart::Function(f) => {
                            return Err(not_adql(f.name.span, "this table name"));
                        }
                    }
                }
                if let [one] = parts.as_slice()
                    && let Some(spelling) = self.ctes.get(&one.value.to_lowercase())
                {
                    let mut id = one.clone();
                    id.value = spelling.clone();
                    *name = ObjectName::from(vec![id]);
                    return Ok(());
                }
                let i = self.table(&parts, span)?;
                let table = &self.tables[i];
                if self.collecting() {
                    if !self.read.contains(&i) {
                        self.read.push(i);
                    }
                    let (schema, name) = (table.schema.clone(), table.name.clone());
                    self.learn(&schema);
                    self.learn(&name);
                    let qualifier = alias.as_ref().map_or(&name, |a| &a.name.value);
                    let bound = self
                        .qualifiers
                        .entry(qualifier.to_lowercase())
                        .or_insert(Some(i));
                    if *bound != Some(i) {
                        *bound = None;
                    }
                    let columns: Vec<String> = self.tables[i]
                        .columns
                        .iter()
                        .map(|c| c.name.clone())
                        .collect();
                    for c in columns {
                        self.learn(&c);
                        if !self.columns.contains(&c) {
                            self.columns.push(c);
                        }
                    }
                }
                let schema_span = parts.first().map(|p| p.span).unwrap_or(span);
                let name_span = parts.last().map(|p| p.span).unwrap_or(span);
                *name = ObjectName::from(vec![
                    Ident {
                        value: table.schema.clone(),
                        quote_style: Some('"'),
                        span: schema_span,
                    },
                    Ident {
                        value: table.name.clone(),
                        quote_style: Some('"'),
                        span: name_span,
                    },
                ]);
                Ok(())
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                sample,
            } => {
                if *lateral || sample.is_some() {
                    return Err(not_adql(subquery.span(), "LATERAL"));
                }
                match alias {
                    Some(a) => self.table_alias(a)?,
                    None => {
                        return Err(
                            Error::at(subquery.span(), "a subquery in FROM needs a name")
                                .hint("name it: FROM (SELECT ...) AS t"),
                        );
                    }
                }
                self.query(subquery)
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if let Some(a) = alias {
                    self.table_alias(a)?;
                }
                self.table_with_joins(table_with_joins)
            }
            other => Err(not_adql(other.span(), "this kind of table reference")),
        }
    }

    /// Finds the table a `[schema.]table` name means.
    pub(super) fn table(&self, parts: &[Ident], span: Span) -> Result<usize> {
        let (schema, name) = match parts {
            [name] => (None, name),
            [schema, name] => (Some(schema), name),
            // ADQL's catalog.schema.table: this service serves one catalog, by any name.
            [_catalog, schema, name] => (Some(schema), name),
            _ => {
                return Err(Error::at(
                    span,
                    "table names have at most three parts: catalog.schema.table",
                ));
            }
        };
        let fits = |want: &Ident, have: &str, exact: bool| {
            if exact || want.quote_style.is_some() {
                want.value == have
            } else {
                want.value.eq_ignore_ascii_case(have)
            }
        };
        let find = |exact: bool| -> Vec<usize> {
            (0..self.tables.len())
                .filter(|&i| {
                    let t = &self.tables[i];
                    schema.is_none_or(|s| fits(s, &t.schema, exact)) && fits(name, &t.name, exact)
                })
                .collect()
        };
        let found = find(false);
        match found.as_slice() {
            [i] => Ok(*i),
            [] => {
                let loose: Vec<usize> = (0..self.tables.len())
                    .filter(|&i| {
                        let t = &self.tables[i];
                        schema.is_none_or(|s| s.value.eq_ignore_ascii_case(&t.schema))
                            && name.value.eq_ignore_ascii_case(&t.name)
                    })
                    .collect();
                if let [i] = loose.as_slice() {
                    let t = &self.tables[*i];
                    return Err(Error::at(
                        span,
                        format!(
                            "quoted table name {} does not match the case of {}.{}",
                            parts
                                .iter()
                                .map(|p| p.to_string())
                                .collect::<Vec<_>>()
                                .join("."),
                            t.schema,
                            t.name
                        ),
                    )
                    .hint("quoted names are exact; leave them unquoted to ignore case"));
                }
                let full: Vec<String> = self
                    .tables
                    .iter()
                    .map(|t| format!("{}.{}", t.schema, t.name))
                    .collect();
                let wanted = parts
                    .iter()
                    .map(|p| p.value.as_str())
                    .collect::<Vec<_>>()
                    .join(".");
                let mut near = nearest(&wanted, full.iter().map(String::as_str));
                if near.is_empty() {
                    near = nearest(&name.value, self.tables.iter().map(|t| t.name.as_str()));
                }
                // sqlparser gives names in single quotes no position.
                let span = if span.start.line == 0 {
                    locate(self.text, &wanted).unwrap_or(span)
                } else {
                    span
                };
                let e = Error::at(span, format!("unknown table '{wanted}'"));
                Err(if near.is_empty() {
                    if parts.len() > 1 && parts[0].value.eq_ignore_ascii_case("TAP_UPLOAD") {
                        e.hint("an upload is named by the UPLOAD parameter (name,URL), not listed in TAP_SCHEMA")
                    } else {
                        e.hint("the tables are listed in TAP_SCHEMA.tables")
                    }
                } else {
                    e.hint(format!("did you mean {}?", near.join(", ")))
                })
            }
            many => Err(
                Error::at(span, format!("table name '{}' is ambiguous", name.value)).hint(format!(
                    "qualify it: {}",
                    many.iter()
                        .map(|&i| format!("{}.{}", self.tables[i].schema, self.tables[i].name))
                        .collect::<Vec<_>>()
                        .join(" or ")
                )),
            ),
        }
    }

    pub(super) fn as_of(&mut self, v: TableVersion) -> Result<()> {
        let TableVersion::ForSystemTimeAsOf(e) = v else {
            return Err(Error::at(
                Span::empty(),
                "only FOR SYSTEM_TIME AS OF is supported",
            ));
        };
        let span = e.span();
        let wanted = match &e {
            Expr::Value(ValueWithSpan {
                value: Value::Number(n, _),
                ..
            }) => n.parse::<u64>().map(AsOf::Snapshot).map_err(|_| {
                let hint = if n.contains('.') {
                    "for a time, quote it as an ISO-8601 UTC time ('2026-03-01T05:00:00'); \
                     the AS_OF parameter also takes an MJD"
                } else {
                    "snapshots are numbered from 1; `ppdb snapshots` lists them"
                };
                Error::at(
                    span,
                    format!("snapshot number {n} is not a non-negative integer"),
                )
                .hint(hint)
            })?,
            Expr::Value(ValueWithSpan {
                value: Value::SingleQuotedString(s),
                ..
            }) => AsOf::Time(s.clone()),
            _ => {
                return Err(Error::at(
                    span,
                    "FOR SYSTEM_TIME AS OF takes a snapshot number or a quoted UTC time",
                )
                .hint("e.g. FOR SYSTEM_TIME AS OF 12 or AS OF '2025-01-01T00:00:00Z'"));
            }
        };
        if self.collecting() {
            return Ok(());
        }
        match &self.as_of {
            Some((have, _)) if *have != wanted => Err(Error::at(
                span,
                "a query reads one snapshot: every FOR SYSTEM_TIME AS OF must name the same one",
            )),
            Some(_) => Ok(()),
            None => {
                self.as_of = Some((wanted, span));
                Ok(())
            }
        }
    }
}
