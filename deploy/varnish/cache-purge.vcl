vcl 4.1;
# cache-purge-hooks: Varnish (7.x) in front of your app, purged by the `varnish` backend in any
# mode. Set the backend's port to your app's (the test suite and `blog --behind varnish` fill
# it in).
#   mode = "cli" / "varnishadm": bans over the admin port (-T, -S); ban_style = "lurker"
#       tests the x-url / x-host headers stored below
#   mode = "http", http_method = "purge": PURGE <url>, 200 Purged or 404 Not in cache
#   mode = "http", http_method = "ban": BAN with X-Ban-Url (and X-Ban-Host) regexes
#   mode = "http", http_method = "refresh": GET <url> with X-Cache-Purge-Refresh: 1, for which
#       the page's stored variants are purged and it is fetched anew (req.hash_always_miss):
#       the next visitor gets the new page from the cache, never a miss or a stale copy
#   tags = "ban": bans on the tags the app sends in `xkey` response headers, whole tokens only
#       (over the admin port, or as BAN with X-Ban-Tags in mode = "http")
# For tags = "xkey" (varnish-modules), use cache-purge-xkey.vcl, which includes this file.
import std;
import purge;

backend origin { .host = "127.0.0.1"; .port = "@ORIGIN_PORT@"; }

# Who may purge: this machine only.
acl purgers { "127.0.0.1"; "::1"; }

sub vcl_recv {
    if (req.http.X-Cache-Purge-Refresh) {
        if (client.ip ~ purgers && req.method == "GET") {
            # A refresh: skip the stored copy and fetch the page anew; vcl_miss purges the
            # stored variants first.
            set req.hash_always_miss = true;
        } else {
            # From anyone else, an ordinary request (never a way to bypass the cache).
            unset req.http.X-Cache-Purge-Refresh;
        }
    }
    if (req.method == "PURGE") {
        if (client.ip !~ purgers) { return (synth(405, "Not allowed")); }
        # look the object up so vcl_hit/vcl_miss can purge and report 200/404
        return (hash);
    }
    if (req.method == "BAN") {
        if (client.ip !~ purgers) { return (synth(405, "Not allowed")); }
        if (req.http.X-Ban-Tags) {
            # Tag bans test the tags kept on each object (lurker-friendly too).
            if (req.http.X-Ban-Host) {
                if (std.ban("obj.http.xkey ~ " + req.http.X-Ban-Tags +
                            " && obj.http.x-host ~ " + req.http.X-Ban-Host)) {
                    return (synth(200, "Ban added"));
                }
            } else if (std.ban("obj.http.xkey ~ " + req.http.X-Ban-Tags)) {
                return (synth(200, "Ban added"));
            }
            return (synth(400, std.ban_error()));
        }
        if (!req.http.X-Ban-Url) { return (synth(400, "X-Ban-Url or X-Ban-Tags header required")); }
        # lurker-friendly bans: match obj.http.x-url / x-host (set in vcl_backend_response)
        if (req.http.X-Ban-Host) {
            if (std.ban("obj.http.x-url ~ " + req.http.X-Ban-Url +
                        " && obj.http.x-host ~ " + req.http.X-Ban-Host)) {
                return (synth(200, "Ban added"));
            }
        } else if (std.ban("obj.http.x-url ~ " + req.http.X-Ban-Url)) {
            return (synth(200, "Ban added"));
        }
        return (synth(400, std.ban_error()));
    }
}

sub cache_purge_hard {
    set req.http.X-Purged = purge.hard();
    if (req.http.X-Purged == "0") { return (synth(404, "Not in cache")); }
    return (synth(200, "Purged"));
}
sub vcl_hit  { if (req.method == "PURGE") { call cache_purge_hard; } }
sub vcl_miss {
    if (req.method == "PURGE") { call cache_purge_hard; }
    # A refresh: purge every stored variant (the copy being fetched is busy, and kept), so
    # that none stays stale, whatever the origin answers. Visitors asking meanwhile wait for
    # the fetch instead of going to the origin.
    if (req.http.X-Cache-Purge-Refresh) { set req.http.X-Purged = purge.hard(); }
}

sub vcl_backend_response {
    # The ban lurker tests objects, never requests: keep URL and host on each object.
    set beresp.http.x-url = bereq.url;
    set beresp.http.x-host = bereq.http.host;
    # An app may send its tags in several `xkey` lines (each under 4 KB): a ban sees only
    # the first line of a header, so keep them as one.
    if (beresp.http.xkey) { std.collect(beresp.http.xkey, " "); }
    # How long an object is kept is the app's Cache-Control (`public, max-age=N`); without
    # one, Varnish's default_ttl (2 minutes).
}

sub vcl_deliver {
    unset resp.http.x-url;
    unset resp.http.x-host;
    unset resp.http.xkey;
    if (obj.hits > 0) { set resp.http.X-Cache = "HIT"; } else { set resp.http.X-Cache = "MISS"; }
    # Tell the refresher that its variants were purged, and whether the new page is cached.
    if (req.http.X-Cache-Purge-Refresh && req.http.X-Purged) {
        set resp.http.X-Purged = req.http.X-Purged;
        if (obj.uncacheable) {
            set resp.http.X-Cache-Purge-Refresh = "uncacheable";
        } else {
            set resp.http.X-Cache-Purge-Refresh = "stored";
        }
    }
}

sub vcl_synth {
    if (req.http.X-Purged) { set resp.http.X-Purged = req.http.X-Purged; }
}
