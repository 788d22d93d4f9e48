//! Saving files from the page: a blob through a temporary `<a download>`, and the
//! chart's SVG turned into a PNG through an image and a canvas.

use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

use crate::api::js_message;

/// Saves `blob` as `filename`.
pub fn save_blob(blob: &web_sys::Blob, filename: &str) -> Result<(), String> {
    let err = |e: JsValue| js_message(&e);
    let url = web_sys::Url::create_object_url_with_blob(blob).map_err(err)?;
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or("no document")?;
    let a: web_sys::HtmlAnchorElement = document.create_element("a").map_err(err)?.unchecked_into();
    a.set_href(&url);
    a.set_download(filename);
    // Hidden by attribute, not an inline style (the console's CSP allows none).
    a.set_hidden(true);
    let body = document.body().ok_or("no body")?;
    body.append_child(&a).map_err(err)?;
    a.click();
    a.remove();
    // Let the download start before the URL goes away.
    let revoke = Closure::once_into_js(move || {
        let _ = web_sys::Url::revoke_object_url(&url);
    });
    if let Some(w) = web_sys::window() {
        let _ =
            w.set_timeout_with_callback_and_timeout_and_arguments_0(revoke.unchecked_ref(), 10_000);
    }
    Ok(())
}

/// A blob of `text` with a MIME type.
pub fn text_blob(text: &str, mime: &str) -> Result<web_sys::Blob, String> {
    let parts = js_sys::Array::of1(&JsValue::from_str(text));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    web_sys::Blob::new_with_str_sequence_and_options(&parts, &options).map_err(|e| js_message(&e))
}

pub fn save_text(text: &str, mime: &str, filename: &str) -> Result<(), String> {
    save_blob(&text_blob(text, mime)?, filename)
}

/// Renders `svg` (`width`×`height` CSS pixels) at `scale` onto a canvas filled with
/// `background`, and saves it as a PNG. The image loads asynchronously; a failure
/// after that point is reported through `on_error`.
pub fn save_svg_as_png(
    svg: &str,
    width: u32,
    height: u32,
    scale: f64,
    background: &str,
    filename: &str,
    on_error: impl Fn(String) + 'static,
) -> Result<(), String> {
    let err = |e: JsValue| js_message(&e);
    let blob = text_blob(svg, "image/svg+xml;charset=utf-8")?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(err)?;
    let image = web_sys::HtmlImageElement::new().map_err(err)?;
    let (w, h) = (
        (width as f64 * scale).round() as u32,
        (height as f64 * scale).round() as u32,
    );
    let filename = filename.to_owned();
    let background = background.to_owned();
    let on_error = std::rc::Rc::new(on_error);
    let failed = on_error.clone();
    let loaded = image.clone();
    let object_url = url.clone();
    let onload = Closure::once_into_js(move || {
        let _ = web_sys::Url::revoke_object_url(&object_url);
        let draw = || -> Result<web_sys::HtmlCanvasElement, String> {
            let document = web_sys::window()
                .and_then(|w| w.document())
                .ok_or("no document")?;
            let canvas: web_sys::HtmlCanvasElement = document
                .create_element("canvas")
                .map_err(err)?
                .unchecked_into();
            canvas.set_width(w);
            canvas.set_height(h);
            let ctx: web_sys::CanvasRenderingContext2d = canvas
                .get_context("2d")
                .map_err(err)?
                .ok_or("no 2d context")?
                .unchecked_into();
            ctx.set_fill_style_str(&background);
            ctx.fill_rect(0.0, 0.0, w as f64, h as f64);
            ctx.draw_image_with_html_image_element_and_dw_and_dh(
                &loaded, 0.0, 0.0, w as f64, h as f64,
            )
            .map_err(err)?;
            Ok(canvas)
        };
        let canvas = match draw() {
            Ok(c) => c,
            Err(e) => return on_error(e),
        };
        let on_error_blob = on_error.clone();
        let on_blob =
            Closure::once_into_js(
                move |blob: JsValue| match blob.dyn_into::<web_sys::Blob>() {
                    Ok(blob) => {
                        if let Err(e) = save_blob(&blob, &filename) {
                            on_error_blob(e);
                        }
                    }
                    Err(_) => on_error_blob("the browser could not encode the PNG".into()),
                },
            );
        if let Err(e) = canvas.to_blob(on_blob.unchecked_ref()) {
            on_error(js_message(&e));
        }
    });
    let onerror =
        Closure::once_into_js(move || failed("the chart could not be rendered as an image".into()));
    image.set_onload(Some(onload.unchecked_ref()));
    image.set_onerror(Some(onerror.unchecked_ref()));
    image.set_src(&url);
    Ok(())
}
