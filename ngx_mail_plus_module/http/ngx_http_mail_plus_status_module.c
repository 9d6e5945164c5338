
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_mail.h>
#include <nginx.h>
#include "ngx_mail_plus.h"
#include "ngx_mail_plus_directory.h"
#include "ngx_mail_plus_queue.h"
#include "ngx_http_mail_plus.h"


/*
 * Read-only operations endpoints: "mail_plus_status" answers a JSON
 * document, "mail_plus_metrics" the same facts in the Prometheus text
 * format.  Backend health, the counters and the throttling entries are
 * read from the router zone of the mail{} block; without a zone they are
 * not shown at all, since a worker's own numbers are not totals.
 *
 * The queue sizes are the numbers of files in the spool's directories.
 * Reading a directory of many thousands of names blocks, and counts kept
 * by the workers would drift from the spool after a crash or a file moved
 * by hand, so each request counts afresh in the queue's thread pool
 * (ngx_mail_plus_queue_sizes()) and the answer is sent when that is done.
 */


typedef struct {
    ngx_uint_t                  sizes[NGX_MAIL_PLUS_QUEUE_NSIZES];
    unsigned                    metrics:1;
    unsigned                    queue:1;     /* sizes are known */
} ngx_http_mail_plus_status_ctx_t;


/* a counter of the zone */

typedef struct {
    char                       *key;         /* in JSON */
    char                       *name;        /* a metric */
    char                       *help;
    size_t                      offset;      /* in ngx_mail_plus_stats_t */
} ngx_http_mail_plus_status_counter_t;


static ngx_int_t ngx_http_mail_plus_status_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_mail_plus_metrics_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_mail_plus_status_start(ngx_http_request_t *r,
    ngx_uint_t metrics);
static void ngx_http_mail_plus_status_counted(void *data);
static ngx_int_t ngx_http_mail_plus_status_respond(ngx_http_request_t *r);
static void ngx_http_mail_plus_status_json(
    ngx_http_mail_plus_out_t *o, ngx_http_mail_plus_status_ctx_t *ctx,
    ngx_mail_plus_main_conf_t *mpcf, ngx_mail_plus_zone_t *zone);
static void ngx_http_mail_plus_status_json_directories(
    ngx_http_mail_plus_out_t *o, ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_zone_t *zone);
static void ngx_http_mail_plus_status_prometheus_directories(
    ngx_http_mail_plus_out_t *o, ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_zone_t *zone);
static size_t ngx_http_mail_plus_status_zone_free(ngx_mail_plus_zone_t *zone);
static void ngx_http_mail_plus_status_json_pools(
    ngx_http_mail_plus_out_t *o, ngx_mail_plus_main_conf_t *mpcf);
static void ngx_http_mail_plus_status_json_health(
    ngx_http_mail_plus_out_t *o, ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_server_t *server, ngx_uint_t k);
static void ngx_http_mail_plus_status_prometheus(
    ngx_http_mail_plus_out_t *o, ngx_http_mail_plus_status_ctx_t *ctx,
    ngx_mail_plus_main_conf_t *mpcf, ngx_mail_plus_zone_t *zone);
static void ngx_http_mail_plus_status_prometheus_backends(
    ngx_http_mail_plus_out_t *o, ngx_mail_plus_main_conf_t *mpcf,
    ngx_uint_t what);
static void ngx_http_mail_plus_status_family(
    ngx_http_mail_plus_out_t *o, char *name, char *type, char *help);
static char *ngx_http_mail_plus_status_state(ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_health_t *health);
static char *ngx_http_mail_plus_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_mail_plus_status_commands[] = {

    { ngx_string("mail_plus_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_mail_plus_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mail_plus_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_mail_plus_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      1,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_mail_plus_status_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_mail_plus_status_module = {
    NGX_MODULE_V1,
    &ngx_http_mail_plus_status_module_ctx, /* module context */
    ngx_http_mail_plus_status_commands,    /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_mail_plus_status_protocols[] = {
    ngx_string("imap"),
    ngx_string("pop3"),
    ngx_string("smtp"),
    ngx_string("lmtp")
};


/*
 * the login counters: "attempts" first, then its outcomes, which the
 * metrics show as one family with a "result" label
 */

static ngx_http_mail_plus_status_counter_t  ngx_http_mail_plus_status_logins[]
    = {
    { "attempts", "mail_plus_login_attempts_total",
      "Logins the router was asked to check.",
      offsetof(ngx_mail_plus_stats_t, attempts) },

    { "allowed", NULL, NULL, offsetof(ngx_mail_plus_stats_t, allowed) },
    { "denied", NULL, NULL, offsetof(ngx_mail_plus_stats_t, denied) },
    { "locked", NULL, NULL, offsetof(ngx_mail_plus_stats_t, locked) },
    { "tempfail", NULL, NULL, offsetof(ngx_mail_plus_stats_t, tempfail) },
    { NULL, NULL, NULL, 0 }
};


static ngx_http_mail_plus_status_counter_t
    ngx_http_mail_plus_status_deliveries[] = {
    { "sent", NULL, NULL, offsetof(ngx_mail_plus_stats_t, sent) },
    { "deferred", NULL, NULL, offsetof(ngx_mail_plus_stats_t, deferred) },
    { "bounced", NULL, NULL, offsetof(ngx_mail_plus_stats_t, bounced) },
    { NULL, NULL, NULL, 0 }
};


#define ngx_http_mail_plus_status_value(stats, counter)                      \
    (*(ngx_atomic_t *) ((u_char *) (stats) + (counter)->offset))


static ngx_int_t
ngx_http_mail_plus_status_handler(ngx_http_request_t *r)
{
    return ngx_http_mail_plus_status_start(r, 0);
}


static ngx_int_t
ngx_http_mail_plus_metrics_handler(ngx_http_request_t *r)
{
    return ngx_http_mail_plus_status_start(r, 1);
}


static ngx_int_t
ngx_http_mail_plus_status_start(ngx_http_request_t *r, ngx_uint_t metrics)
{
    ngx_int_t                         rc;
    ngx_mail_plus_queue_t            *q;
    ngx_http_mail_plus_status_ctx_t  *ctx;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http status: request, metrics: %ui", metrics);

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_mail_plus_status_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->metrics = metrics;

    ngx_http_set_ctx(r, ctx, ngx_http_mail_plus_status_module);

    q = ngx_mail_plus_queue_get((ngx_cycle_t *) ngx_cycle);

    if (q == NULL) {
        return ngx_http_mail_plus_status_respond(r);
    }

    rc = ngx_mail_plus_queue_sizes(q, ctx->sizes,
                                   ngx_http_mail_plus_status_counted, r,
                                   r->pool, r->connection->log);

    if (rc == NGX_AGAIN) {
        return ngx_http_mail_plus_suspend(r);
    }

    if (rc == NGX_BUSY) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->queue = 1;

    return ngx_http_mail_plus_status_respond(r);
}


static void
ngx_http_mail_plus_status_counted(void *data)
{
    ngx_http_request_t *r = data;

    ngx_http_mail_plus_status_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_mail_plus_status_module);
    ctx->queue = 1;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http status: the queue's sizes counted");

    ngx_http_mail_plus_resume(r, ngx_http_mail_plus_status_respond);
}


static ngx_int_t
ngx_http_mail_plus_status_respond(ngx_http_request_t *r)
{
    char                             *type;
    ngx_mail_plus_zone_t             *zone;
    ngx_mail_plus_main_conf_t        *mpcf;
    ngx_http_mail_plus_out_t          o;
    ngx_http_mail_plus_status_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_mail_plus_status_module);

    ngx_memzero(&o, sizeof(ngx_http_mail_plus_out_t));

    o.request = r;
    o.last = &o.out;
    o.metrics = ctx->metrics;

    mpcf = ngx_mail_plus_get_main_conf((ngx_cycle_t *) ngx_cycle);

    zone = NULL;

    if (mpcf && mpcf->shm_zone) {
        zone = mpcf->shm_zone->data;

        if (zone->sh == NULL) {
            zone = NULL;
        }
    }

    if (ctx->metrics) {
        ngx_http_mail_plus_status_prometheus(&o, ctx, mpcf, zone);
        type = "text/plain; version=0.0.4";

    } else {
        ngx_http_mail_plus_status_json(&o, ctx, mpcf, zone);
        type = "application/json";
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http status: %s served, with the queue: %ui",
                   ctx->metrics ? "metrics" : "status",
                   (ngx_uint_t) ctx->queue);

    return ngx_http_mail_plus_send(r, NGX_HTTP_OK, type, &o);
}


static void
ngx_http_mail_plus_status_json(ngx_http_mail_plus_out_t *o,
    ngx_http_mail_plus_status_ctx_t *ctx, ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_zone_t *zone)
{
    ngx_uint_t                            i;
    ngx_mail_plus_stats_t                *stats;
    ngx_http_mail_plus_status_counter_t  *counter;

    ngx_http_mail_plus_printf(o, "{\"nginx_version\":\"%s\","
                              "\"pid\":%P,\"time\":%T,\"zone\":",
                              NGINX_VERSION, ngx_pid, ngx_time());

    if (zone) {
        ngx_http_mail_plus_string(o, &mpcf->shm_zone->shm.name);

    } else {
        ngx_http_mail_plus_printf(o, "null");
    }

    ngx_http_mail_plus_printf(o, ",\"health_checks\":%s,",
                              (zone && mpcf->check) ? "true"
                                                    : "false");

    ngx_http_mail_plus_status_json_pools(o, mpcf);

    if (zone == NULL) {
        ngx_http_mail_plus_printf(o, ",\"logins\":null,"
                                  "\"throttle\":null,"
                                  "\"sessions\":null,"
                                  "\"smtp\":null,"
                                  "\"deliveries\":null");
        goto queue;
    }

    stats = &zone->sh->stats;

    ngx_http_mail_plus_printf(o, ",\"logins\":{");

    for (counter = ngx_http_mail_plus_status_logins; counter->key; counter++)
    {
        ngx_http_mail_plus_printf(o, "%s\"%s\":%uA",
                          counter == ngx_http_mail_plus_status_logins ? ""
                                                               : ",",
                          counter->key,
                          ngx_http_mail_plus_status_value(stats, counter));
    }

    ngx_http_mail_plus_printf(o, "},\"throttle\":{\"entries\":%ui},",
                              ngx_mail_plus_zone_throttle_entries(zone));

    ngx_http_mail_plus_status_json_directories(o, mpcf, zone);

    ngx_http_mail_plus_printf(o, ",\"sessions\":{");

    for (i = NGX_MAIL_PLUS_IMAP; i <= NGX_MAIL_PLUS_POP3; i++) {
        ngx_http_mail_plus_printf(o, "%s\"%V\":{\"started\":%uA,"
                                    "\"active\":%uA}",
                                    i == NGX_MAIL_PLUS_IMAP ? "" : ",",
                                    &ngx_http_mail_plus_status_protocols[i],
                                    stats->sessions[i], stats->active[i]);
    }

    ngx_http_mail_plus_printf(o, "},\"smtp\":{\"accepted\":%uA},"
                              "\"deliveries\":{", stats->queued);

    for (counter = ngx_http_mail_plus_status_deliveries;
         counter->key;
         counter++)
    {
        ngx_http_mail_plus_printf(o, "%s\"%s\":%uA",
                      counter == ngx_http_mail_plus_status_deliveries ? ""
                                                               : ",",
                      counter->key,
                      ngx_http_mail_plus_status_value(stats, counter));
    }

    ngx_http_mail_plus_printf(o, "}");

queue:

    if (!ctx->queue) {
        ngx_http_mail_plus_printf(o, ",\"queue\":null}\n");
        return;
    }

    ngx_http_mail_plus_printf(o, ",\"queue\":{");

    for (i = 0; i < NGX_MAIL_PLUS_QUEUE_NSIZES; i++) {
        ngx_http_mail_plus_printf(o, "%s\"%s\":%ui", i ? "," : "",
                                  ngx_mail_plus_queue_dirs[i],
                                  ctx->sizes[i]);
    }

    ngx_http_mail_plus_printf(o, "}}\n");
}


static void
ngx_http_mail_plus_status_json_pools(ngx_http_mail_plus_out_t *o,
    ngx_mail_plus_main_conf_t *mpcf)
{
    ngx_uint_t                i, n, k, first;
    ngx_mail_plus_pool_t    **pools;
    ngx_mail_plus_server_t   *servers;

    ngx_http_mail_plus_printf(o, "\"pools\":[");

    if (mpcf == NULL) {
        ngx_http_mail_plus_printf(o, "]");
        return;
    }

    pools = mpcf->pools.elts;

    for (i = 0; i < mpcf->pools.nelts; i++) {
        ngx_http_mail_plus_printf(o, "%s{\"name\":", i ? "," : "");
        ngx_http_mail_plus_string(o, &pools[i]->name);
        ngx_http_mail_plus_printf(o, ",\"servers\":[");

        servers = pools[i]->servers.elts;

        for (n = 0; n < pools[i]->servers.nelts; n++) {
            ngx_http_mail_plus_printf(o, "%s{\"name\":", n ? "," : "");
            ngx_http_mail_plus_string(o, &servers[n].name);
            ngx_http_mail_plus_printf(o, ",\"weight\":%ui,"
                                      "\"backup\":%s,\"protocols\":{",
                                      servers[n].weight,
                                      servers[n].backup ? "true"
                                                        : "false");
            first = 1;

            for (k = 0; k < NGX_MAIL_PLUS_NPROTOCOLS; k++) {
                if (servers[n].port[k] == 0) {
                    continue;
                }

                ngx_http_mail_plus_printf(o, "%s\"%V\":",
                                   first ? "" : ",",
                                   &ngx_http_mail_plus_status_protocols[k]);
                ngx_http_mail_plus_status_json_health(o, mpcf, &servers[n],
                                                      k);
                first = 0;
            }

            ngx_http_mail_plus_printf(o, "}}");
        }

        ngx_http_mail_plus_printf(o, "]}");
    }

    ngx_http_mail_plus_printf(o, "]");
}


static void
ngx_http_mail_plus_status_json_health(ngx_http_mail_plus_out_t *o,
    ngx_mail_plus_main_conf_t *mpcf, ngx_mail_plus_server_t *server,
    ngx_uint_t k)
{
    uint64_t                 ms;
    ngx_str_t                addr;
    ngx_time_t              *tp;
    ngx_mail_plus_health_t  *health;

    addr.data = ngx_pnalloc(o->request->pool, NGX_SOCKADDR_STRLEN);
    if (addr.data == NULL) {
        o->failed = 1;
        return;
    }

    addr.len = ngx_snprintf(addr.data, NGX_SOCKADDR_STRLEN, "%V:%ud",
                            &server->host, (ngx_uint_t) server->port[k])
               - addr.data;

    ngx_http_mail_plus_printf(o, "{\"address\":");
    ngx_http_mail_plus_string(o, &addr);

    health = server->health[k];

    ngx_http_mail_plus_printf(o, ",\"state\":\"%s\"",
                              ngx_http_mail_plus_status_state(mpcf, health));

    if (health == NULL) {
        ngx_http_mail_plus_printf(o, ",\"fails\":null,"
                                  "\"passes\":null,"
                                  "\"last_check\":null}");
        return;
    }

    ngx_http_mail_plus_printf(o, ",\"fails\":%ui,\"passes\":%ui,"
                              "\"last_check\":", health->fails,
                              health->passes);

    if (health->checked == 0) {
        ngx_http_mail_plus_printf(o, "null}");
        return;
    }

    /* the monotonic milliseconds of the check, as Unix time */

    tp = ngx_timeofday();

    ms = (uint64_t) tp->sec * 1000 + tp->msec
         - (ngx_msec_t) (ngx_current_msec - health->checked);

    ngx_http_mail_plus_printf(o, "%uL}", ms);
}


static void
ngx_http_mail_plus_status_prometheus(ngx_http_mail_plus_out_t *o,
    ngx_http_mail_plus_status_ctx_t *ctx, ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_zone_t *zone)
{
    ngx_uint_t                            i;
    ngx_mail_plus_stats_t                *stats;
    ngx_http_mail_plus_status_counter_t  *counter;

    ngx_http_mail_plus_status_family(o, "mail_plus_info", "gauge",
                                     "The version of nginx; always 1.");
    ngx_http_mail_plus_printf(o, "mail_plus_info{nginx=\"%s\"} 1\n",
                              NGINX_VERSION);

    if (zone) {
        ngx_http_mail_plus_status_prometheus_backends(o, mpcf, 0);
        ngx_http_mail_plus_status_prometheus_backends(o, mpcf, 1);
        ngx_http_mail_plus_status_prometheus_backends(o, mpcf, 2);

        stats = &zone->sh->stats;

        counter = ngx_http_mail_plus_status_logins;

        ngx_http_mail_plus_status_family(o, counter->name, "counter",
                                         counter->help);
        ngx_http_mail_plus_printf(o, "%s %uA\n", counter->name,
                              ngx_http_mail_plus_status_value(stats, counter));

        ngx_http_mail_plus_status_family(o, "mail_plus_logins_total",
                                         "counter",
                                         "Logins the router answered, by "
                                         "result.");

        for (counter++; counter->key; counter++) {
            ngx_http_mail_plus_printf(o, "mail_plus_logins_total"
                              "{result=\"%s\"} %uA\n", counter->key,
                              ngx_http_mail_plus_status_value(stats, counter));
        }

        ngx_http_mail_plus_status_family(o, "mail_plus_zone_size_bytes",
                                         "gauge",
                                         "The size of the router zone.");
        ngx_http_mail_plus_printf(o, "mail_plus_zone_size_bytes %uz\n",
                                  mpcf->shm_zone->shm.size);

        ngx_http_mail_plus_status_family(o, "mail_plus_zone_free_bytes",
                                         "gauge",
                                         "Free pages of the router zone.");
        ngx_http_mail_plus_printf(o, "mail_plus_zone_free_bytes %uz\n",
                                  ngx_http_mail_plus_status_zone_free(zone));

        ngx_http_mail_plus_status_family(o, "mail_plus_throttle_entries",
                                         "gauge",
                                         "Throttling entries in the zone.");
        ngx_http_mail_plus_printf(o, "mail_plus_throttle_entries %ui\n",
                                  ngx_mail_plus_zone_throttle_entries(zone));

        ngx_http_mail_plus_status_prometheus_directories(o, mpcf, zone);

        ngx_http_mail_plus_status_family(o, "mail_plus_sessions_total",
                                         "counter",
                                         "Proxied sessions logged in to "
                                         "a backend.");

        for (i = NGX_MAIL_PLUS_IMAP; i <= NGX_MAIL_PLUS_POP3; i++) {
            ngx_http_mail_plus_printf(o,
                                     "mail_plus_sessions_total"
                                     "{protocol=\"%V\"} %uA\n",
                                     &ngx_http_mail_plus_status_protocols[i],
                                     stats->sessions[i]);
        }

        ngx_http_mail_plus_status_family(o, "mail_plus_sessions_active",
                                         "gauge",
                                         "Proxied sessions open now.");

        for (i = NGX_MAIL_PLUS_IMAP; i <= NGX_MAIL_PLUS_POP3; i++) {
            ngx_http_mail_plus_printf(o,
                                     "mail_plus_sessions_active"
                                     "{protocol=\"%V\"} %uA\n",
                                     &ngx_http_mail_plus_status_protocols[i],
                                     stats->active[i]);
        }

        ngx_http_mail_plus_status_family(o, "mail_plus_queue_accepted_total",
                                         "counter",
                                         "Messages accepted into the queue "
                                         "by SMTP.");
        ngx_http_mail_plus_printf(o, "mail_plus_queue_accepted_total "
                                  "%uA\n", stats->queued);

        ngx_http_mail_plus_status_family(o, "mail_plus_deliveries_total",
                                         "counter",
                                         "Delivery attempts of a recipient, "
                                         "by outcome.");

        for (counter = ngx_http_mail_plus_status_deliveries;
             counter->key;
             counter++)
        {
            ngx_http_mail_plus_printf(o, "mail_plus_deliveries_total"
                              "{status=\"%s\"} %uA\n", counter->key,
                              ngx_http_mail_plus_status_value(stats, counter));
        }
    }

    if (!ctx->queue) {
        return;
    }

    ngx_http_mail_plus_status_family(o, "mail_plus_queue_messages", "gauge",
                                     "Files in a directory of the spool.");

    for (i = 0; i < NGX_MAIL_PLUS_QUEUE_NSIZES; i++) {
        ngx_http_mail_plus_printf(o, "mail_plus_queue_messages"
                                  "{queue=\"%s\"} %ui\n",
                                  ngx_mail_plus_queue_dirs[i],
                                  ctx->sizes[i]);
    }
}


/* the directories in their order: state, counters, the cache's size */

static void
ngx_http_mail_plus_status_json_directories(ngx_http_mail_plus_out_t *o,
    ngx_mail_plus_main_conf_t *mpcf, ngx_mail_plus_zone_t *zone)
{
    ngx_uint_t                  i, n;
    ngx_mail_plus_dir_t       **dir;
    ngx_mail_plus_dir_stats_t  *st;

    n = mpcf->directories ? mpcf->directories->nelts : 0;
    dir = n ? mpcf->directories->elts : NULL;

    ngx_http_mail_plus_printf(o, "\"directories\":[");

    for (i = 0; i < n; i++) {
        st = &zone->sh->dirs[dir[i]->index];

        ngx_http_mail_plus_printf(o, "%s{\"name\":", i ? "," : "");
        ngx_http_mail_plus_string(o, &dir[i]->name);
        ngx_http_mail_plus_printf(o, ",\"type\":\"%V\",\"up\":%s,"
                                  "\"lookups\":%uA,\"cache_hits\":%uA,"
                                  "\"failures\":%uA,\"stale\":%uA}",
                                  &dir[i]->ops->type,
                                  st->down ? "false" : "true",
                                  st->lookups, st->hits, st->failures,
                                  st->stale);
    }

    ngx_http_mail_plus_printf(o, "],\"directory_cache\":{\"entries\":%ui},"
                              "\"zone_size\":%uz,\"zone_free\":%uz",
                              zone->sh->dir_entries,
                              mpcf->shm_zone->shm.size,
                              ngx_http_mail_plus_status_zone_free(zone));
}


static void
ngx_http_mail_plus_status_prometheus_directories(ngx_http_mail_plus_out_t *o,
    ngx_mail_plus_main_conf_t *mpcf, ngx_mail_plus_zone_t *zone)
{
    ngx_uint_t                  i, k, n;
    ngx_atomic_uint_t           value;
    ngx_mail_plus_dir_t       **dir;

    static char  *families[][3] = {
        { "mail_plus_directory_up", "gauge",
          "Whether the directory's source answers: 1 or 0." },
        { "mail_plus_directory_lookups_total", "counter",
          "Questions asked of the directory's source." },
        { "mail_plus_directory_cache_hits_total", "counter",
          "Questions answered by the zone's cache." },
        { "mail_plus_directory_failures_total", "counter",
          "Questions the source could not answer." },
        { "mail_plus_directory_stale_total", "counter",
          "Stale answers used while the source could not answer." }
    };

    /* in the order of the families */

    static size_t  offsets[] = {
        offsetof(ngx_mail_plus_dir_stats_t, down),
        offsetof(ngx_mail_plus_dir_stats_t, lookups),
        offsetof(ngx_mail_plus_dir_stats_t, hits),
        offsetof(ngx_mail_plus_dir_stats_t, failures),
        offsetof(ngx_mail_plus_dir_stats_t, stale)
    };

    ngx_http_mail_plus_status_family(o, "mail_plus_directory_cache_entries",
                                     "gauge",
                                     "Answers of the directories and "
                                     "passwords found right, cached in the "
                                     "zone.");
    ngx_http_mail_plus_printf(o, "mail_plus_directory_cache_entries %ui\n",
                              zone->sh->dir_entries);

    n = mpcf->directories ? mpcf->directories->nelts : 0;

    if (n == 0) {
        return;
    }

    dir = mpcf->directories->elts;

    for (k = 0; k < sizeof(offsets) / sizeof(size_t); k++) {

        ngx_http_mail_plus_status_family(o, families[k][0], families[k][1],
                                         families[k][2]);

        for (i = 0; i < n; i++) {
            value = *(ngx_atomic_t *) ((u_char *) &zone->sh->dirs[dir[i]->index]
                                       + offsets[k]);

            /* the first is "up", the zone keeps "down" */

            if (k == 0) {
                value = !value;
            }

            ngx_http_mail_plus_printf(o, "%s{directory=\"%V\"} %uA\n",
                                      families[k][0], &dir[i]->name, value);
        }
    }

}


/* the zone's free pages, in bytes: a page in use by small blocks is not */

static size_t
ngx_http_mail_plus_status_zone_free(ngx_mail_plus_zone_t *zone)
{
    size_t  free;

    ngx_shmtx_lock(&zone->shpool->mutex);
    free = zone->shpool->pfree * ngx_pagesize;
    ngx_shmtx_unlock(&zone->shpool->mutex);

    return free;
}


/* what: 0 is the state, 1 the failures in a row, 2 the passes in a row */

static void
ngx_http_mail_plus_status_prometheus_backends(
    ngx_http_mail_plus_out_t *o, ngx_mail_plus_main_conf_t *mpcf,
    ngx_uint_t what)
{
    char                     *state;
    ngx_uint_t                i, n, k, value;
    ngx_mail_plus_pool_t    **pools;
    ngx_mail_plus_health_t   *health;
    ngx_mail_plus_server_t   *servers;

    static char  *names[] = { "mail_plus_backend_up",
                              "mail_plus_backend_fails",
                              "mail_plus_backend_passes" };

    static char  *helps[] = {
        "Backend state as the router sees it: 1 up, 0 down; absent when "
        "not known.",
        "Failed checks or connections in a row.",
        "Passed checks or connections in a row."
    };

    ngx_http_mail_plus_status_family(o, names[what], "gauge", helps[what]);

    pools = mpcf->pools.elts;

    for (i = 0; i < mpcf->pools.nelts; i++) {
        servers = pools[i]->servers.elts;

        for (n = 0; n < pools[i]->servers.nelts; n++) {
            for (k = 0; k < NGX_MAIL_PLUS_NPROTOCOLS; k++) {

                health = servers[n].health[k];

                if (health == NULL) {
                    continue;
                }

                state = ngx_http_mail_plus_status_state(mpcf, health);

                switch (what) {

                case 0:
                    if (state[0] == 'u' && state[1] == 'n') {
                        continue;   /* "unknown" */
                    }

                    value = (state[0] == 'u');
                    break;

                case 1:
                    value = health->fails;
                    break;

                default:
                    value = health->passes;
                }

                ngx_http_mail_plus_printf(o, "%s{pool=", names[what]);
                ngx_http_mail_plus_string(o, &pools[i]->name);
                ngx_http_mail_plus_printf(o, ",server=");
                ngx_http_mail_plus_string(o, &servers[n].name);
                ngx_http_mail_plus_printf(o, ",protocol=\"%V\","
                                 "address=\"%V:%ud\"} %ui\n",
                                 &ngx_http_mail_plus_status_protocols[k],
                                 &servers[n].host,
                                 (ngx_uint_t) servers[n].port[k], value);
            }
        }
    }
}


static void
ngx_http_mail_plus_status_family(ngx_http_mail_plus_out_t *o,
    char *name, char *type, char *help)
{
    ngx_http_mail_plus_printf(o, "# HELP %s %s\n# TYPE %s %s\n",
                              name, help, name, type);
}


/*
 * "unknown" without a zone; without active checks a server is "down" when
 * sessions or deliveries marked it so, and "unknown" otherwise
 */

static char *
ngx_http_mail_plus_status_state(ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_health_t *health)
{
    if (health == NULL) {
        return "unknown";
    }

    if (health->down) {
        return "down";
    }

    return mpcf->check ? "up" : "unknown";
}


static char *
ngx_http_mail_plus_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate";
    }

    clcf->handler = cmd->offset ? ngx_http_mail_plus_metrics_handler
                                : ngx_http_mail_plus_status_handler;

    return NGX_CONF_OK;
}
