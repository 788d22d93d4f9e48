//! Spend: what traffic cost over a time range, grouped by feature, team, endpoint,
//! cloud or variant, as JSON or as a CSV download.

use std::sync::Arc;

use aide::OperationOutput;
use aide::generate::GenContext;
use aide::openapi::{MediaType, Operation, Response as ApiResponse, StatusCode as ApiStatus};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use router_core::admin::{SpendGroup, SpendReport};
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{AdminError, AdminQuery};
use crate::{AppState, unix_ms};

#[derive(Deserialize, JsonSchema)]
pub struct SpendQuery {
    /// Start of the range, inclusive (ms since the Unix epoch; default: 24 h before
    /// `to_ms`). At least 0.
    from_ms: Option<i64>,
    /// End of the range, exclusive (ms since the Unix epoch; default: now). At most
    /// the year 2100; the range spans at most 731 days.
    to_ms: Option<i64>,
    /// How rows are grouped (default `feature`).
    group_by: Option<SpendGroup>,
}

/// The latest instant a range may name: 2100-01-01T00:00:00Z.
pub const LATEST_MS: i64 = 4_102_444_800_000;
/// The longest range: two years. A report reads the hourly rollups of its whole
/// hours, so this bounds the rows one request scans.
pub const MAX_SPAN_MS: i64 = 731 * DAY_MS;
const DAY_MS: i64 = 86_400_000;

/// The range `q` asks for, checked: both ends within [0, [`LATEST_MS`]], `from`
/// before `to`, at most [`MAX_SPAN_MS`] apart. A refusal names the parameter.
pub fn range(q: &SpendQuery, now_ms: i64) -> Result<(i64, i64), AdminError> {
    let within = |param: &str, ms: i64| {
        if (0..=LATEST_MS).contains(&ms) {
            Ok(ms)
        } else {
            Err(AdminError::bad_param(
                param,
                format!("`{param}` must be between 0 and {LATEST_MS} (ms since the Unix epoch)"),
            ))
        }
    };
    let to = within("to_ms", q.to_ms.unwrap_or(now_ms))?;
    // The default start is computed only when none is given, and never below 0.
    let from = match q.from_ms {
        Some(from) => within("from_ms", from)?,
        None => to.saturating_sub(DAY_MS).max(0),
    };
    if from >= to {
        return Err(AdminError::bad_param(
            "from_ms",
            "`from_ms` must be before `to_ms`",
        ));
    }
    if to - from > MAX_SPAN_MS {
        return Err(AdminError::bad_param(
            "from_ms",
            format!(
                "the range spans {} days, more than the {} a report may cover: ask for several",
                (to - from + DAY_MS - 1) / DAY_MS,
                MAX_SPAN_MS / DAY_MS
            ),
        ));
    }
    Ok((from, to))
}

async fn spend_report(state: &AppState, q: &SpendQuery) -> Result<SpendReport, AdminError> {
    let (from, to) = range(q, unix_ms())?;
    let group = q.group_by.unwrap_or(SpendGroup::Feature);
    let snapshot = state.engine.snapshot();
    let hourly: Vec<(String, Decimal)> = snapshot
        .config
        .endpoints()
        .iter()
        .filter_map(|e| e.config.pricing.hourly.map(|h| (e.config.name.clone(), h)))
        .collect();
    Ok(state.store.spend(from, to, group, &hourly).await?)
}

pub async fn report(
    State(state): State<Arc<AppState>>,
    AdminQuery(q): AdminQuery<SpendQuery>,
) -> Result<Json<SpendReport>, AdminError> {
    Ok(Json(spend_report(&state, &q).await?))
}

pub async fn csv(
    State(state): State<Arc<AppState>>,
    AdminQuery(q): AdminQuery<SpendQuery>,
) -> Result<CsvDownload, AdminError> {
    let report = spend_report(&state, &q).await?;
    Ok(CsvDownload {
        filename: format!(
            "crossbar-spend-{}-{}-{}.csv",
            report.group_by.as_str(),
            report.from_ms,
            report.to_ms
        ),
        body: spend_csv(&report).map_err(AdminError::internal)?,
    })
}

/// The report as CSV: a header, one row per group, then the provisioned hours no
/// group used.
fn spend_csv(report: &SpendReport) -> Result<Vec<u8>, csv::Error> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        report.group_by.as_str(),
        "requests",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "on_demand_tokens",
        "provisioned_tokens",
        "on_demand",
        "provisioned",
        "total",
    ])?;
    for r in &report.rows {
        out.write_record([
            r.key.clone(),
            r.requests.to_string(),
            r.errors.to_string(),
            r.prompt_tokens.to_string(),
            r.completion_tokens.to_string(),
            r.on_demand_tokens.to_string(),
            r.provisioned_tokens.to_string(),
            r.on_demand.to_string(),
            r.provisioned.to_string(),
            r.total.to_string(),
        ])?;
    }
    let unattributed = report.unattributed_provisioned.to_string();
    out.write_record([
        "(unattributed provisioned)",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        unattributed.as_str(),
        unattributed.as_str(),
    ])?;
    out.into_inner().map_err(|e| e.into_error().into())
}

/// A CSV file to download (`text/csv`, with a file name).
pub struct CsvDownload {
    filename: String,
    body: Vec<u8>,
}

impl IntoResponse for CsvDownload {
    fn into_response(self) -> Response {
        let mut response = self.body.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", self.filename))
        {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
        response
    }
}

impl OperationOutput for CsvDownload {
    type Inner = String;

    fn operation_response(
        _ctx: &mut GenContext,
        _operation: &mut Operation,
    ) -> Option<ApiResponse> {
        Some(ApiResponse {
            description: "The report as CSV: a header row, one row per group, then `(unattributed provisioned)`."
                .into(),
            content: [("text/csv".to_owned(), MediaType::default())]
                .into_iter()
                .collect(),
            ..ApiResponse::default()
        })
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<ApiStatus>, ApiResponse)> {
        Self::operation_response(ctx, operation)
            .map(|r| (Some(ApiStatus::Code(200)), r))
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use router_core::admin::SpendRow;

    #[test]
    fn a_group_name_with_a_comma_or_quote_is_quoted_in_the_csv() {
        let row = |key: &str| SpendRow {
            key: key.into(),
            requests: 2,
            errors: 0,
            prompt_tokens: 10,
            completion_tokens: 5,
            on_demand: Decimal::new(15, 3),
            provisioned: Decimal::ZERO,
            provisioned_tokens: 0,
            on_demand_tokens: 15,
            total: Decimal::new(15, 3),
        };
        let report = SpendReport {
            from_ms: 0,
            to_ms: 1,
            group_by: SpendGroup::Team,
            rows: vec![row("search"), row("a, \"b\"")],
            unattributed_provisioned: Decimal::new(5, 1),
            total: Decimal::new(35, 3),
            series: Vec::new(),
            bucket_ms: 60_000,
        };
        let text = String::from_utf8(spend_csv(&report).unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "team,requests,errors,prompt_tokens,completion_tokens,on_demand_tokens,provisioned_tokens,on_demand,provisioned,total",
                "search,2,0,10,5,15,0,0.015,0,0.015",
                "\"a, \"\"b\"\"\",2,0,10,5,15,0,0.015,0,0.015",
                "(unattributed provisioned),,,,,,,,0.5,0.5",
            ]
        );
    }
}
