//! The spend chart: on-demand spend per bucket, stacked by key, drawn with `plotters`
//! into an SVG string (inserted into the page, downloadable, rasterised for PNG).
//! Pure: it runs natively in the unit tests.

use plotters::prelude::*;

use crate::logic::spend::Stacked;

pub const WIDTH: u32 = 1120;
pub const HEIGHT: u32 = 340;
/// The chart's background (also the PNG's): the console's panel colour.
pub const BACKGROUND: &str = "#171e2e";

const BG: RGBColor = RGBColor(0x17, 0x1e, 0x2e);
const GRID: RGBColor = RGBColor(0x26, 0x30, 0x47);
const LABEL: RGBColor = RGBColor(0x98, 0xa2, 0xb8);
const TEXT: RGBColor = RGBColor(0xe6, 0xea, 0xf2);

/// Series colours, distinguishable on the dark background.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0x5b, 0x8c, 0xff),
    RGBColor(0x3c, 0xcf, 0x91),
    RGBColor(0xf5, 0xa6, 0x23),
    RGBColor(0xc0, 0x6b, 0xff),
    RGBColor(0x35, 0xc4, 0xdc),
    RGBColor(0xff, 0x6b, 0x8b),
    RGBColor(0xb8, 0xd1, 0x4a),
    RGBColor(0x8a, 0x94, 0xa8),
];

/// Renders the chart. `x_label` formats a bucket's start time (ms) for the axis.
pub fn render(stacked: &Stacked, x_label: &dyn Fn(i64) -> String) -> Result<String, String> {
    let mut svg = String::new();
    draw(&mut svg, stacked, x_label).map_err(|e| format!("cannot draw the chart: {e}"))?;
    Ok(svg)
}

fn draw(
    svg: &mut String,
    stacked: &Stacked,
    x_label: &dyn Fn(i64) -> String,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&BG)?;
    let label_font = ("sans-serif", 12).into_font().color(&LABEL);

    if stacked.buckets.is_empty() || stacked.max() <= 0.0 {
        root.draw(&Text::new(
            "No on-demand spend in this range",
            ((WIDTH / 2 - 110) as i32, (HEIGHT / 2) as i32),
            ("sans-serif", 15).into_font().color(&LABEL),
        ))?;
        root.present()?;
        return Ok(());
    }

    let first = stacked.buckets[0];
    let last = *stacked.buckets.last().expect("not empty");
    let x_end = if last > first { last } else { first + 1 };
    let y_max = stacked.max() * 1.12;

    let mut chart = ChartBuilder::on(&root)
        .margin(14)
        .x_label_area_size(26)
        .y_label_area_size(70)
        .build_cartesian_2d(first..x_end, 0.0..y_max)?;
    chart
        .configure_mesh()
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(GRID)
        .label_style(label_font.clone())
        .x_labels(8)
        .y_labels(6)
        .x_label_formatter(&|x| x_label(*x))
        .y_label_formatter(&|y| money_axis(*y))
        .draw()?;

    let tops = stacked.tops();
    // From the top of the stack down: each lower area is drawn over the one above it.
    for k in (0..stacked.keys.len()).rev() {
        let colour = PALETTE[k % PALETTE.len()];
        let points: Vec<(i64, f64)> = stacked
            .buckets
            .iter()
            .cloned()
            .zip(tops[k].iter().cloned())
            .collect();
        chart
            .draw_series(AreaSeries::new(points, 0.0, colour.mix(0.85)).border_style(colour))?
            .label(stacked.keys[k].clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(BG.mix(0.9))
        .border_style(GRID)
        .label_font(("sans-serif", 12).into_font().color(&TEXT))
        .draw()?;
    root.present()?;
    Ok(())
}

/// The y axis: dollars, with cents only where the scale needs them.
fn money_axis(y: f64) -> String {
    if y >= 100.0 {
        format!("${y:.0}")
    } else if y >= 1.0 {
        format!("${y:.2}")
    } else {
        format!("${y:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stacked_chart_renders_one_area_per_key_with_a_legend() {
        let stacked = Stacked {
            buckets: vec![0, 3_600_000, 7_200_000],
            keys: vec!["summarize".into(), "recap".into()],
            values: vec![vec![1.0, 2.0, 1.5], vec![0.5, 0.0, 0.25]],
        };
        let svg = render(&stacked, &|ms| format!("{}h", ms / 3_600_000)).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.contains("summarize") && svg.contains("recap"));
        assert!(
            svg.contains("$1.00") || svg.contains("$2.00"),
            "money on the axis"
        );
        assert!(svg.contains("1h"), "time on the axis");
        assert!(svg.contains(&format!("width=\"{WIDTH}\"")));
    }

    #[test]
    fn an_empty_range_says_so_instead_of_drawing_empty_axes() {
        let svg = render(&Stacked::default(), &|_| String::new()).unwrap();
        assert!(svg.contains("No on-demand spend in this range"));
    }
}
