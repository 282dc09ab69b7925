package daemon

import (
	_ "embed"
	"net/http"
)

// The dashboard (GET /) is static: a page, its script and its style sheet,
// embedded in the binary. It needs no token itself; its script sends the
// token (from ?token= or a form) to the data endpoints, which check it.
var (
	//go:embed web/dashboard.html
	dashboardHTML []byte
	//go:embed web/dashboard.js
	dashboardJS []byte
	//go:embed web/dashboard-preview.js
	dashboardPreviewJS []byte
	//go:embed web/dashboard-faces.js
	dashboardFacesJS []byte
	//go:embed web/dashboard.css
	dashboardCSS []byte
	//go:embed web/publish.html
	publishHTML []byte
	//go:embed web/publish.js
	publishJS []byte
	//go:embed web/publish.css
	publishCSS []byte
)

// dashboardCSP allows only the daemon's own script, style and pictures,
// and websockets back to it: no inline script, nothing from elsewhere.
const dashboardCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// dashboardRoutes adds the static pages: GET / (the dashboard), its three
// scripts and style sheet, and /publish with its script and style sheet.
func dashboardRoutes(mux *http.ServeMux) {
	mux.Handle("GET /{$}", staticAsset(dashboardHTML, "text/html; charset=utf-8"))
	mux.Handle("GET /dashboard.js", staticAsset(dashboardJS, "text/javascript; charset=utf-8"))
	mux.Handle("GET /dashboard-preview.js", staticAsset(dashboardPreviewJS, "text/javascript; charset=utf-8"))
	mux.Handle("GET /dashboard-faces.js", staticAsset(dashboardFacesJS, "text/javascript; charset=utf-8"))
	mux.Handle("GET /dashboard.css", staticAsset(dashboardCSS, "text/css; charset=utf-8"))
	// /publish: the browser publisher (pick a stream id, share the camera,
	// watch the connection; the WHIP POST carries the token).
	mux.Handle("GET /publish", staticAsset(publishHTML, "text/html; charset=utf-8"))
	mux.Handle("GET /publish.js", staticAsset(publishJS, "text/javascript; charset=utf-8"))
	mux.Handle("GET /publish.css", staticAsset(publishCSS, "text/css; charset=utf-8"))
}

// staticAsset serves one embedded file, revalidated on every load (the
// binary may have been upgraded) and never sent as a referrer's query
// (the page's URL may carry the token).
func staticAsset(body []byte, contentType string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Security-Policy", dashboardCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		w.Write(body)
	})
}
