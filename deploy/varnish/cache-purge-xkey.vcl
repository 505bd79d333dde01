vcl 4.1;
# cache-purge-hooks: cache-purge.vcl plus purges by tag through the xkey vmod (Debian's
# varnish-modules), for a `varnish` backend with mode = "http" and tags = "xkey":
#   PURGE / with `xkey-purge: TAG`: every object whose `xkey` response header (one or more
#   lines, tags separated by spaces or commas) holds TAG is removed (xkey.purge), or with
#   `xkey-soft: 1` marked stale (xkey.softpurge: served within its grace while it is fetched
#   again); 200 with the number of objects in X-Purged, 0 when no object had the tag.
# Keep both files side by side: the include is relative to this one.
import xkey;

# Runs before cache-purge.vcl's vcl_recv (subroutines of the same name run in source order);
# `purgers` is that file's ACL.
sub vcl_recv {
    if (req.method == "PURGE" && req.http.xkey-purge) {
        if (client.ip !~ purgers) { return (synth(405, "Not allowed")); }
        if (req.http.xkey-soft == "1") {
            set req.http.X-Purged = xkey.softpurge(req.http.xkey-purge);
        } else {
            set req.http.X-Purged = xkey.purge(req.http.xkey-purge);
        }
        return (synth(200, "Invalidated"));
    }
}

include "./cache-purge.vcl";
