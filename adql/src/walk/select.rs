//! The SELECT list and clause: columns and their names, wildcards, GROUP BY,
//! HAVING, DISTINCT.

use sqlparser::ast::{
    Distinct, Expr, GroupByExpr, Ident, Select, SelectFlavor, SelectItem,
    SelectItemQualifiedWildcardKind, Spanned, TopQuantity, WildcardAdditionalOptions,
};

use crate::Error;
use std::collections::HashSet;

use super::*;

impl Walker<'_> {
    pub(super) fn select(&mut self, s: &mut Select) -> Result<Option<u64>> {
        let span = s.select_token.0.span;
        if let Some(Distinct::On(_)) = s.distinct {
            return Err(not_adql(span, "DISTINCT ON"));
        }
        if !s.optimizer_hints.is_empty() || s.select_modifiers.is_some() {
            return Err(not_adql(span, "a SELECT modifier"));
        }
        if s.into.is_some() {
            return Err(not_adql(span, "SELECT INTO"));
        }
        if s.exclude.is_some()
            || !s.lateral_views.is_empty()
            || s.prewhere.is_some()
            || !s.connect_by.is_empty()
            || !s.cluster_by.is_empty()
            || !s.distribute_by.is_empty()
            || !s.sort_by.is_empty()
            || !s.named_window.is_empty()
            || s.qualify.is_some()
            || s.value_table_mode.is_some()
            || s.flavor != SelectFlavor::Standard
        {
            return Err(not_adql(span, "this SELECT clause"));
        }
        let top = match s.top.take() {
            None => None,
            Some(t) if t.with_ties || t.percent => {
                return Err(not_adql(span, "TOP ... PERCENT / WITH TIES"));
            }
            Some(t) => match t.quantity {
                Some(TopQuantity::Constant(n)) => Some(n),
                Some(TopQuantity::Expr(e)) => {
                    return Err(Error::at(e.span(), "TOP takes an integer literal"));
                }
                None => return Err(Error::at(span, "TOP takes an integer literal")),
            },
        };
        if s.from.is_empty() {
            return Err(
                Error::at(span, "a FROM clause is required: ADQL selects from tables")
                    .hint("TAP_SCHEMA.schemas has one row per schema"),
            );
        }
        for twj in &mut s.from {
            self.table_with_joins(twj)?;
        }
        crate::wildcard::expand_clashes(s, self.tables);
        // A name may appear once in a result: DataFusion refuses a projection
        // with two. Columns a wildcard brings in come first, so an explicit
        // column of the same name is renamed (`SELECT *, ra` gives `ra_2`).
        let mut used: HashSet<String> = HashSet::new();
        // Planning time grows faster than the width of a result: it is bounded.
        let mut width = 0usize;
        {
            for item in &s.projection {
                let qualifier = match item {
                    SelectItem::Wildcard(_) => None,
                    SelectItem::QualifiedWildcard(
                        SelectItemQualifiedWildcardKind::ObjectName(name),
                        _,
                    ) => name.0.last().and_then(|p| p.as_ident()),
                    _ => {
                        width += 1;
                        too_wide(width, item)?;
                        continue;
                    }
                };
                for table in self.tables_of(&s.from, qualifier) {
                    width += table.columns.len();
                    used.extend(table.columns.iter().map(|c| c.name.to_lowercase()));
                }
                too_wide(width, item)?;
            }
        }
        if self.collecting() {
            self.outputs += s.projection.len();
        }
        for (i, item) in s.projection.iter_mut().enumerate() {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let name = match e {
                        Expr::Identifier(id) => Some(id.value.clone()),
                        Expr::CompoundIdentifier(ids) => ids.last().map(|id| id.value.clone()),
                        _ => None,
                    };
                    let auto = match e {
                        Expr::Function(f) => f.name.to_string().to_lowercase(),
                        _ => format!("col{}", i + 1),
                    };
                    self.expr(e)?;
                    // Re-read the name after resolution so that it carries the
                    // schema's spelling (collecting, the names known so far give it).
                    let resolved = match e {
                        Expr::Identifier(id) => Some(id.value.clone()),
                        Expr::CompoundIdentifier(ids) => ids.last().map(|id| id.value.clone()),
                        _ => None,
                    };
                    let base = match resolved.or(name) {
                        Some(n) if self.collecting() => {
                            self.names.get(&n.to_lowercase()).cloned().unwrap_or(n)
                        }
                        Some(n) => n,
                        None => auto,
                    };
                    let mut alias = base.clone();
                    let mut n = 2;
                    while !used.insert(alias.to_lowercase()) {
                        alias = format!("{base}_{n}");
                        n += 1;
                    }
                    if self.collecting() {
                        // An outer query may name a renamed column (`t.ra_2`).
                        if alias != base {
                            self.define(&Ident::new(alias));
                        }
                        continue;
                    }
                    let plain = matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
                    if !plain || alias != base {
                        let expr = std::mem::replace(e, number(0));
                        *item = SelectItem::ExprWithAlias {
                            expr,
                            alias: Ident::with_quote('"', alias),
                        };
                    }
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    self.check_alias(alias)?;
                    self.define(alias);
                    self.expr(expr)?;
                    if !used.insert(alias.value.to_lowercase()) && !self.collecting() {
                        return Err(Error::at(
                            alias.span,
                            format!("the result already has a column named {}", alias.value),
                        )
                        .hint("give this column another alias"));
                    }
                }
                SelectItem::ExprWithAliases { expr, .. } => {
                    return Err(not_adql(expr.span(), "a multi-column alias"));
                }
                SelectItem::Wildcard(opts) => self.wildcard(opts)?,
                SelectItem::QualifiedWildcard(kind, opts) => {
                    self.wildcard(opts)?;
                    match kind {
                        SelectItemQualifiedWildcardKind::ObjectName(name) => {
                            self.object_name(name)?;
                        }
                        SelectItemQualifiedWildcardKind::Expr(e) => {
                            return Err(not_adql(e.span(), "this wildcard"));
                        }
                    }
                }
            }
        }
        if let Some(e) = &mut s.selection {
            check_condition(e)?;
            self.expr(e)?;
        }
        match &mut s.group_by {
            GroupByExpr::All(_) => return Err(not_adql(span, "GROUP BY ALL")),
            GroupByExpr::Expressions(exprs, modifiers) => {
                if !modifiers.is_empty() {
                    return Err(not_adql(span, "GROUP BY ... WITH"));
                }
                for e in exprs.iter_mut() {
                    self.expr(e)?;
                }
                if !self.collecting() && !exprs.is_empty() {
                    self.grouped = self
                        .grouped
                        .saturating_add(width.max(1).saturating_mul(exprs.len()));
                    if self.grouped > crate::MAX_GROUPED {
                        return Err(Error::at(
                            exprs[0].span(),
                            format!(
                                "the query groups too many columns by too many keys (output \
                                 columns times GROUP BY keys, over all its SELECTs, past {})",
                                crate::MAX_GROUPED
                            ),
                        )
                        .hint("group by fewer keys, or select fewer columns"));
                    }
                }
            }
        }
        if let Some(e) = &mut s.having {
            check_condition(e)?;
            self.expr(e)?;
        }
        Ok(top)
    }

    pub(super) fn wildcard(&self, o: &WildcardAdditionalOptions) -> Result<()> {
        if o.opt_ilike.is_some()
            || o.opt_exclude.is_some()
            || o.opt_except.is_some()
            || o.opt_replace.is_some()
            || o.opt_rename.is_some()
            || o.opt_alias.is_some()
        {
            return Err(not_adql(o.wildcard_token.0.span, "this wildcard option"));
        }
        Ok(())
    }
}

/// Refuses a select list once it has more than [`crate::MAX_COLUMNS`] columns.
pub(super) fn too_wide(width: usize, item: &SelectItem) -> Result<()> {
    if width <= crate::MAX_COLUMNS {
        return Ok(());
    }
    Err(Error::at(
        item.span(),
        format!(
            "the result would have more than {} columns; this item is past the limit",
            crate::MAX_COLUMNS
        ),
    )
    .hint("select the columns you need by name"))
}
