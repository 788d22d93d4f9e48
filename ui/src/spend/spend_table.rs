use leptos::prelude::*;
use router_core::admin::SpendReport;

use crate::logic::{format, spend};

/// One row per group, largest total first; the footer adds them up, then the
/// provisioned hours no traffic used, then the range's total.
#[component]
pub fn SpendTable(report: SpendReport) -> impl IntoView {
    let mut rows = report.rows.clone();
    rows.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.key.cmp(&b.key)));
    let t = spend::totals(&rows);
    let share = |p: u64, o: u64| {
        if p + o == 0 {
            format::NONE.to_owned()
        } else {
            format::fraction(p as f64 / (p + o) as f64)
        }
    };
    let group = report.group_by.as_str();
    view! {
        <table class="grid" id="spend-table">
            <thead>
                <tr>
                    <th>{group}</th>
                    <th class="num">"requests"</th>
                    <th class="num">"errors"</th>
                    <th class="num">"prompt tokens"</th>
                    <th class="num">"completion tokens"</th>
                    <th class="num" title="Marginal token cost on on-demand endpoints">"on-demand"</th>
                    <th class="num" title="This group's share of provisioned hours, in proportion to its tokens">"provisioned"</th>
                    <th class="num" title="Share of tokens served by provisioned capacity">"provisioned share"</th>
                    <th class="num">"total"</th>
                </tr>
            </thead>
            <tbody>
                {if rows.is_empty() {
                    view! { <tr><td colspan="9" class="placeholder">"No traffic in this range."</td></tr> }.into_any()
                } else {
                    rows.into_iter()
                        .map(|r| {
                            view! {
                                <tr data-spend-key=r.key.clone()>
                                    <td>{if r.key.is_empty() { "(none)".to_owned() } else { r.key.clone() }}</td>
                                    <td class="num">{format::int(r.requests)}</td>
                                    <td class="num">{format::int(r.errors)}</td>
                                    <td class="num">{format::int(r.prompt_tokens)}</td>
                                    <td class="num">{format::int(r.completion_tokens)}</td>
                                    <td class="num">{format::money(&r.on_demand)}</td>
                                    <td class="num">{format::money(&r.provisioned)}</td>
                                    <td class="num">{spend::provisioned_share(&r).map(format::fraction).unwrap_or_else(|| format::NONE.into())}</td>
                                    <td class="num strong">{format::money(&r.total)}</td>
                                </tr>
                            }
                        })
                        .collect_view()
                        .into_any()
                }}
            </tbody>
            <tfoot>
                <tr class="sum">
                    <td>"all groups"</td>
                    <td class="num">{format::int(t.requests)}</td>
                    <td class="num">{format::int(t.errors)}</td>
                    <td class="num">{format::int(t.prompt_tokens)}</td>
                    <td class="num">{format::int(t.completion_tokens)}</td>
                    <td class="num">{format::money(&t.on_demand)}</td>
                    <td class="num">{format::money(&t.provisioned)}</td>
                    <td class="num">{share(t.provisioned_tokens, t.on_demand_tokens)}</td>
                    <td class="num">{format::money(&t.total)}</td>
                </tr>
                <tr id="spend-unattributed">
                    <td colspan="8" title="Provisioned hours in the range that no traffic used">
                        "unattributed provisioned capacity (paid, unused)"
                    </td>
                    <td class="num">{format::money(&report.unattributed_provisioned)}</td>
                </tr>
                <tr class="grand">
                    <td colspan="8">"total for the range"</td>
                    <td class="num" id="spend-total">{format::money(&report.total)}</td>
                </tr>
            </tfoot>
        </table>
    }
}
