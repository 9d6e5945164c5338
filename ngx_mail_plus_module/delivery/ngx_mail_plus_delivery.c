
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_delivery.h"


/*
 * The queue runner.  Every worker takes part: it claims due messages by
 * rename() into active/<ID>.<pid> (new ones at once when it committed them,
 * the others by scans of incoming/ and of the due buckets of deferred/),
 * splits the
 * recipients by destination (a local domain's recipient goes to its
 * mailbox backend as the router decides, over LMTP or SMTP; others to a
 * per-domain route or the relay host), hands each part, a job, to the
 * scheduler of that destination (ngx_mail_plus_destination.c), and when
 * every job is done records the result:
 * removed, or deferred with a new state file and a retry time, with a
 * bounce for the recipients that failed.
 *
 * Scans: a periodic one (queue_scan_interval) that also takes back the
 * claims of gone workers; one when a bucket of deferred/ falls due or a
 * dead destination's next attempt comes (a timer every second looks at
 * the times the last scan and the destinations gave); one when a dead
 * destination is alive again, or an operator flushed the queue; and
 * while a scan finds more due than there was room for, one each time
 * half of the room is free again: a backlog is claimed as fast as it is
 * delivered, with queue_active_limit and the destinations' concurrency
 * as the only bounds.
 */


typedef struct {
    ngx_mail_plus_delivery_conf_t  *dcf;
    ngx_mail_plus_main_conf_t      *mpcf;
    ngx_mail_plus_queue_t          *queue;
    ngx_array_t                     local;     /* ngx_str_t */
    ngx_queue_t                     msgs;      /* ngx_mail_plus_dmsg_t */
    ngx_uint_t                      nmsgs;
    ngx_event_t                     scan;       /* the periodic one */
    ngx_event_t                     kick;       /* one now, posted */
    ngx_event_t                     watch;      /* every second */
    ngx_pool_t                     *scan_pool;  /* a scan in the thread */
    ngx_mail_plus_queue_due_t       due;
    time_t                          next;       /* a bucket falls due */
    time_t                          scanned;    /* the last scan's start */
    ngx_atomic_uint_t               flushes;    /* seen */
    ngx_uint_t                      claims;     /* in flight */
    ngx_uint_t                      claimed;    /* of the scan's IDs */
    unsigned                        claiming:1; /* the scan's IDs */
    unsigned                        more:1;     /* due, no room for it */
    unsigned                        again:1;    /* after this scan */
} ngx_mail_plus_delivery_ctx_t;


static ngx_int_t ngx_mail_plus_delivery_local_domains(ngx_cycle_t *cycle);
static void ngx_mail_plus_delivery_scan_handler(ngx_event_t *ev);
static void ngx_mail_plus_delivery_kick_handler(ngx_event_t *ev);
static void ngx_mail_plus_delivery_watch_handler(ngx_event_t *ev);
static void ngx_mail_plus_delivery_kick(ngx_mail_plus_delivery_ctx_t *ctx);
static void ngx_mail_plus_delivery_alive(ngx_mail_plus_dest_t *dest);
static void ngx_mail_plus_delivery_scan(ngx_mail_plus_delivery_ctx_t *ctx,
    ngx_uint_t reclaim);
static void ngx_mail_plus_delivery_scanned(void *data);
static void ngx_mail_plus_delivery_claims(ngx_mail_plus_delivery_ctx_t *ctx);
static void ngx_mail_plus_delivery_notify(ngx_mail_plus_queue_t *q,
    u_char *id);
static void ngx_mail_plus_delivery_claim(ngx_uint_t which, u_char *id,
    u_char *bucket);
static void ngx_mail_plus_delivery_loaded(void *data);
static ngx_int_t ngx_mail_plus_delivery_records(ngx_mail_plus_dmsg_t *msg,
    char **reason);
static void ngx_mail_plus_delivery_plan(ngx_mail_plus_dmsg_t *msg);
static ngx_mail_plus_dest_t *ngx_mail_plus_delivery_resolve(
    ngx_mail_plus_dmsg_t *msg, ngx_mail_plus_rcpt_t *rcpt);
static ngx_mail_plus_dest_t *ngx_mail_plus_delivery_resolve_local(
    ngx_mail_plus_dmsg_t *msg, ngx_mail_plus_rcpt_t *rcpt);
static ngx_mail_plus_dest_t *ngx_mail_plus_delivery_resolve_route(
    ngx_mail_plus_dmsg_t *msg, ngx_mail_plus_rcpt_t *rcpt, ngx_str_t *name);
static ngx_uint_t ngx_mail_plus_delivery_is_local(ngx_str_t *domain);
static void ngx_mail_plus_delivery_domain(ngx_mail_plus_rcpt_t *rcpt,
    ngx_str_t *domain);
static void ngx_mail_plus_delivery_result(ngx_mail_plus_job_t *job,
    ngx_uint_t i, ngx_uint_t code, ngx_str_t *text, ngx_uint_t remote);
static void ngx_mail_plus_delivery_set(ngx_mail_plus_dmsg_t *msg,
    ngx_mail_plus_rcpt_t *rcpt, ngx_uint_t code, ngx_str_t *text);
static void ngx_mail_plus_delivery_job_done(ngx_mail_plus_job_t *job,
    ngx_uint_t code, ngx_str_t *text);
static void ngx_mail_plus_delivery_finalize(ngx_mail_plus_dmsg_t *msg);
static void ngx_mail_plus_delivery_bounced(ngx_mail_plus_queue_msg_t *m);
static void ngx_mail_plus_delivery_record(ngx_mail_plus_dmsg_t *msg,
    ngx_uint_t bounced);
static ngx_uint_t ngx_mail_plus_delivery_error(ngx_mail_plus_rcpt_t *rcpt);
static void ngx_mail_plus_delivery_defer(ngx_mail_plus_dmsg_t *msg,
    time_t next, ngx_str_t *state, uint32_t key);
static void ngx_mail_plus_delivery_corrupt(ngx_mail_plus_dmsg_t *msg,
    char *reason);
static void ngx_mail_plus_delivery_deferred(void *data);
static void ngx_mail_plus_delivery_recorded(ngx_mail_plus_dmsg_t *msg,
    ngx_int_t rc);
static void ngx_mail_plus_delivery_retry(ngx_event_t *ev);
static void ngx_mail_plus_delivery_reported(ngx_mail_plus_queue_msg_t *m);
static void ngx_mail_plus_delivery_free(ngx_mail_plus_dmsg_t *msg);


/* a spool operation the thread pool could not take is tried again */

#define NGX_MAIL_PLUS_DELIVERY_RETRY  1000


static ngx_mail_plus_delivery_ctx_t  *ngx_mail_plus_delivery;

static ngx_str_t  ngx_mail_plus_delivery_none = ngx_string("none");


/* how often the due times and the flushes are looked at */

#define NGX_MAIL_PLUS_DELIVERY_WATCH  1000


/*
 * the claims of a scan in flight at once: the thread pool's queue stays
 * short, so that the commits of new messages never wait behind a backlog
 */

#define NGX_MAIL_PLUS_DELIVERY_CLAIMS  32


/* in every worker, with "queue_delivery on" */

ngx_int_t
ngx_mail_plus_delivery_init_worker(ngx_cycle_t *cycle,
    ngx_mail_plus_delivery_conf_t *dcf, ngx_mail_plus_queue_t *q)
{
    ngx_mail_plus_delivery_ctx_t  *ctx;

    ctx = ngx_pcalloc(cycle->pool, sizeof(ngx_mail_plus_delivery_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->dcf = dcf;
    ctx->queue = q;
    ctx->mpcf = ngx_mail_plus_get_main_conf(cycle);

    ngx_queue_init(&ctx->msgs);

    ngx_mail_plus_delivery = ctx;

    ngx_mail_plus_dest_init(dcf, ngx_mail_plus_delivery_job_done,
                            ngx_mail_plus_delivery_alive);

    if (ngx_mail_plus_delivery_local_domains(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_mail_plus_queue_set_notify(q, ngx_mail_plus_delivery_notify);

    ctx->scan.handler = ngx_mail_plus_delivery_scan_handler;
    ctx->scan.data = ctx;
    ctx->scan.log = cycle->log;
    ctx->scan.cancelable = 1;

    ctx->kick.handler = ngx_mail_plus_delivery_kick_handler;
    ctx->kick.data = ctx;
    ctx->kick.log = cycle->log;

    ctx->watch.handler = ngx_mail_plus_delivery_watch_handler;
    ctx->watch.data = ctx;
    ctx->watch.log = cycle->log;
    ctx->watch.cancelable = 1;

    /* flushes before this worker started are not its business */

    (void) ngx_mail_plus_queue_flushed(q, &ctx->flushes, NULL);

    /* the workers start at once, spread over a few milliseconds */

    ngx_add_timer(&ctx->scan, 1 + ngx_random() % 100);
    ngx_add_timer(&ctx->watch, NGX_MAIL_PLUS_DELIVERY_WATCH);

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, cycle->log, 0,
                   "delivery: runner started, %ui local domains",
                   ctx->local.nelts);

    return NGX_OK;
}


/* the local domains of every store-and-forward server */

static ngx_int_t
ngx_mail_plus_delivery_local_domains(ngx_cycle_t *cycle)
{
    ngx_str_t                       *d, *l;
    ngx_uint_t                       i, j;
    ngx_mail_core_srv_conf_t       **cscfp;
    ngx_mail_core_main_conf_t       *cmcf;
    ngx_mail_plus_smtp_srv_conf_t   *sscf;

    if (ngx_array_init(&ngx_mail_plus_delivery->local, cycle->pool, 4,
                       sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cmcf = ngx_mail_plus_cycle_get_main_conf(cycle, ngx_mail_core_module);
    cscfp = cmcf->servers.elts;

    for (i = 0; i < cmcf->servers.nelts; i++) {
        sscf = cscfp[i]->ctx->srv_conf[ngx_mail_plus_smtp_module.ctx_index];

        if (!sscf->enable || sscf->local_domains == NULL) {
            continue;
        }

        d = sscf->local_domains->elts;

        for (j = 0; j < sscf->local_domains->nelts; j++) {
            l = ngx_array_push(&ngx_mail_plus_delivery->local);
            if (l == NULL) {
                return NGX_ERROR;
            }

            *l = d[j];
        }
    }

    return NGX_OK;
}


/* a worker going away gives back what it claimed and did not finish */

void
ngx_mail_plus_delivery_exit_worker(ngx_cycle_t *cycle)
{
    ngx_queue_t                   *q;
    ngx_mail_plus_dmsg_t          *msg;
    ngx_mail_plus_delivery_ctx_t  *ctx;

    ctx = ngx_mail_plus_delivery;

    if (ctx == NULL) {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, cycle->log, 0,
                   "delivery: runner stops, %ui messages given back",
                   ctx->nmsgs);

    while (!ngx_queue_empty(&ctx->msgs)) {
        q = ngx_queue_head(&ctx->msgs);
        msg = ngx_queue_data(q, ngx_mail_plus_dmsg_t, queue);

        (void) ngx_mail_plus_queue_release(ctx->queue, msg->id, cycle->log);

        ngx_mail_plus_delivery_free(msg);
    }

    ngx_mail_plus_delivery = NULL;
}


/*
 * the periodic scan, which also takes back the claims of gone workers;
 * the spool's directories are read in the thread pool, never in the event
 * loop, and the due messages found are claimed when it is done
 */

static void
ngx_mail_plus_delivery_scan_handler(ngx_event_t *ev)
{
    ngx_mail_plus_delivery_ctx_t  *ctx;

    ctx = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_add_timer(ev, ctx->dcf->scan_interval);

    ngx_mail_plus_delivery_scan(ctx, 1);
}


static void
ngx_mail_plus_delivery_kick_handler(ngx_event_t *ev)
{
    if (ngx_exiting || ngx_terminate || ngx_quit
        || ngx_mail_plus_delivery != ev->data)
    {
        return;
    }

    ngx_mail_plus_delivery_scan(ev->data, 0);
}


/* a scan now, or right after the one running */

static void
ngx_mail_plus_delivery_kick(ngx_mail_plus_delivery_ctx_t *ctx)
{
    if (ctx->scan_pool) {
        ctx->again = 1;
        return;
    }

    if (!ctx->kick.posted) {
        ngx_post_event(&ctx->kick, &ngx_posted_events);
    }
}


/*
 * every second: a flush by an operator (in any worker) makes the
 * destinations flushed try again; a bucket that falls due, or a dead
 * destination's next attempt that comes, starts a scan
 */

static void
ngx_mail_plus_delivery_watch_handler(ngx_event_t *ev)
{
    time_t                         now, next;
    uint32_t                       keys[NGX_MAIL_PLUS_QUEUE_FLUSHES];
    ngx_uint_t                     i, n;
    ngx_mail_plus_delivery_ctx_t  *ctx;

    ctx = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_add_timer(ev, NGX_MAIL_PLUS_DELIVERY_WATCH);

    n = ngx_mail_plus_queue_flushed(ctx->queue, &ctx->flushes, keys);

    for (i = 0; i < n; i++) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ev->log, 0,
                       "delivery: flush of %08xD heard", keys[i]);

        ngx_mail_plus_dest_flush(keys[i]);
    }

    now = ngx_time();

    if (n || (ctx->next && ctx->next <= now)) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ev->log, 0,
                       "delivery: %ui flushes, a bucket due at %T",
                       n, ctx->next);

        ctx->next = 0;
        ngx_mail_plus_delivery_kick(ctx);
        return;
    }

    /* a next attempt that came since the last scan started */

    next = ngx_mail_plus_dest_next_attempt(ctx->scanned);

    if (next && next <= now) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ev->log, 0,
                       "delivery: a destination's next attempt at %T", next);

        ngx_mail_plus_delivery_kick(ctx);
    }
}


/* a dead destination is alive: its deferred messages are claimed */

static void
ngx_mail_plus_delivery_alive(ngx_mail_plus_dest_t *dest)
{
    if (ngx_mail_plus_delivery) {
        ngx_mail_plus_delivery_kick(ngx_mail_plus_delivery);
    }
}


static void
ngx_mail_plus_delivery_scan(ngx_mail_plus_delivery_ctx_t *ctx,
    ngx_uint_t reclaim)
{
    ngx_int_t    rc;
    ngx_uint_t   room;
    ngx_pool_t  *pool;

    room = (ctx->nmsgs < ctx->dcf->active_limit)
           ? ctx->dcf->active_limit - ctx->nmsgs : 0;

    if (ctx->scan_pool || room == 0) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ctx->scan.log, 0,
                       "delivery scan: skipped, %ui messages active%s",
                       ctx->nmsgs, ctx->scan_pool ? ", a scan running" : "");

        if (ctx->scan_pool) {
            ctx->again = 1;

        } else {
            ctx->more = 1;
        }

        return;
    }

    pool = ngx_create_pool(4096, ctx->scan.log);
    if (pool == NULL) {
        return;
    }

    ctx->due.ids = ngx_palloc(pool, room
                                    * sizeof(ngx_mail_plus_queue_due_id_t));
    ctx->due.wait = ngx_palloc(pool, (ngx_mail_plus_dest_count() + 1)
                                     * sizeof(ngx_mail_plus_queue_wait_t));

    if (ctx->due.ids == NULL || ctx->due.wait == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    ctx->due.nalloc = room;
    ctx->due.nwait = ngx_mail_plus_dest_waits(ctx->due.wait);
    ctx->due.now = ngx_time();
    ctx->due.reclaim = reclaim;

    ctx->scan_pool = pool;
    ctx->scanned = ctx->due.now;
    ctx->more = 0;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ctx->scan.log, 0,
                   "delivery scan: room for %ui messages, %ui destinations "
                   "waiting%s", room, ctx->due.nwait,
                   reclaim ? ", claims of gone workers taken back" : "");

    rc = ngx_mail_plus_queue_scan(ctx->queue, &ctx->due,
                                  ngx_mail_plus_delivery_scanned, ctx, pool,
                                  ctx->scan.log);

    if (rc == NGX_AGAIN) {
        return;
    }

    /* the thread pool is busy: the next periodic scan */

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, ctx->scan.log, 0,
                   "delivery scan: not posted, the next one in time");

    ctx->scan_pool = NULL;
    ngx_destroy_pool(pool);
}


static void
ngx_mail_plus_delivery_scanned(void *data)
{
    ngx_mail_plus_delivery_ctx_t *ctx = data;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ctx->scan.log, 0,
                   "delivery scan: %ui messages due%s, next bucket at %T",
                   ctx->due.nids, ctx->due.more ? " and more" : "",
                   ctx->due.next);

    ctx->next = ctx->due.next;
    ctx->claimed = 0;
    ctx->claiming = 1;

    if (ctx->due.more) {
        ctx->more = 1;
    }

    ngx_mail_plus_delivery_claims(ctx);
}


/*
 * the scan's IDs are claimed, NGX_MAIL_PLUS_DELIVERY_CLAIMS at a time
 * (each claim done posts the next), as long as there is room; then the
 * scan is over
 */

static void
ngx_mail_plus_delivery_claims(ngx_mail_plus_delivery_ctx_t *ctx)
{
    ngx_uint_t                     stop;
    ngx_mail_plus_queue_due_id_t  *id;

    /* not while the scan itself runs in the thread */

    if (!ctx->claiming) {
        return;
    }

    stop = (ngx_exiting || ngx_terminate || ngx_quit
            || ngx_mail_plus_delivery != ctx);

    while (!stop && ctx->claimed < ctx->due.nids
           && ctx->claims < NGX_MAIL_PLUS_DELIVERY_CLAIMS)
    {
        if (ctx->nmsgs >= ctx->dcf->active_limit) {
            ctx->more = 1;
            stop = 1;
            break;
        }

        id = &ctx->due.ids[ctx->claimed++];

        ngx_mail_plus_delivery_claim(id->which, id->id, id->bucket);
    }

    if (!stop && ctx->claimed < ctx->due.nids) {
        return;
    }

    ngx_log_debug5(NGX_LOG_DEBUG_MAIL, ctx->scan.log, 0,
                   "delivery scan: finished, %ui of %ui claims posted, "
                   "%ui messages active, %s%s",
                   ctx->claimed, ctx->due.nids, ctx->nmsgs,
                   ctx->more ? "more due" : "no more due",
                   ctx->again ? ", scanned again" : "");

    ngx_destroy_pool(ctx->scan_pool);
    ctx->scan_pool = NULL;
    ctx->claiming = 0;

    if (ngx_exiting || ngx_terminate || ngx_quit
        || ngx_mail_plus_delivery != ctx)
    {
        return;
    }

    /* more is due: claimed while at least half of the room is free */

    if (ctx->again
        || (ctx->more && ctx->nmsgs <= ctx->dcf->active_limit / 2))
    {
        ctx->again = 0;
        ctx->more = 0;
        ngx_mail_plus_delivery_kick(ctx);
    }
}


/* a message this worker has just committed: scheduled at once */

static void
ngx_mail_plus_delivery_notify(ngx_mail_plus_queue_t *q, u_char *id)
{
    if (ngx_mail_plus_delivery == NULL || ngx_exiting || ngx_terminate
        || ngx_mail_plus_delivery->nmsgs
           >= ngx_mail_plus_delivery->dcf->active_limit)
    {
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                   "delivery %*s: committed by this worker, claimed at once",
                   (size_t) NGX_MAIL_PLUS_QUEUE_ID_LEN, id);

    ngx_mail_plus_delivery_claim(NGX_MAIL_PLUS_QUEUE_INCOMING, id, NULL);
}


/*
 * the claim, and the reads of the envelope and the state file, go to the
 * thread pool; when it cannot take them, the message stays where it is,
 * for the next scan
 */

static void
ngx_mail_plus_delivery_claim(ngx_uint_t which, u_char *id, u_char *bucket)
{
    ngx_int_t                      rc;
    ngx_pool_t                    *pool;
    ngx_mail_plus_dmsg_t          *msg;
    ngx_mail_plus_delivery_ctx_t  *ctx;

    ctx = ngx_mail_plus_delivery;

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    msg = ngx_pcalloc(pool, sizeof(ngx_mail_plus_dmsg_t));
    if (msg == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    msg->pool = pool;
    msg->log = ngx_cycle->log;
    msg->spool = ctx->queue;
    msg->fd = NGX_INVALID_FILE;

    msg->retry.data = msg;
    msg->retry.log = msg->log;
    msg->retry.cancelable = 1;

    ngx_memcpy(msg->id, id, NGX_MAIL_PLUS_QUEUE_ID_LEN);

    ngx_queue_insert_tail(&ctx->msgs, &msg->queue);
    ctx->nmsgs++;

    msg->load.which = which;

    if (bucket) {
        ngx_memcpy(msg->bucket, bucket, NGX_MAIL_PLUS_QUEUE_BUCKET_LEN + 1);
        msg->load.bucket = msg->bucket;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                   "delivery %s: claim", msg->id);

    rc = ngx_mail_plus_queue_load(ctx->queue, msg->id, &msg->load,
                                  ngx_mail_plus_delivery_loaded, msg, pool,
                                  msg->log);

    if (rc != NGX_AGAIN) {
        ngx_mail_plus_delivery_free(msg);
        return;
    }

    msg->claiming = 1;
    ctx->claims++;
}


/* the claim and the reads are done: the records are parsed */

static void
ngx_mail_plus_delivery_loaded(void *data)
{
    ngx_mail_plus_dmsg_t *msg = data;

    char                          *reason;
    ngx_int_t                      rc;
    ngx_str_t                      state;
    ngx_mail_plus_delivery_ctx_t  *ctx;

    ctx = ngx_mail_plus_delivery;

    if (msg->claiming) {
        msg->claiming = 0;

        if (ctx) {
            ctx->claims--;
            ngx_mail_plus_delivery_claims(ctx);
        }
    }

    msg->fd = msg->load.fd;

    if (msg->fd == NGX_INVALID_FILE) {

        /* another worker was first, or a failure, logged */

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                       "delivery %s: not claimed", msg->id);

        ngx_mail_plus_delivery_free(msg);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                   "delivery %s: claimed, %O bytes", msg->id, msg->load.size);

    if (ctx == NULL) {
        (void) ngx_mail_plus_queue_release(msg->spool, msg->id, msg->log);
        ngx_mail_plus_delivery_free(msg);
        return;
    }

    if (msg->load.size == 0) {
        ngx_mail_plus_delivery_corrupt(msg, "empty file");
        return;
    }

    rc = NGX_ERROR;

    if (msg->load.head.data) {
        rc = ngx_mail_plus_delivery_records(msg, &reason);
    }

    if (rc == NGX_DECLINED) {
        ngx_mail_plus_delivery_corrupt(msg, reason);
        return;
    }

    if (rc != NGX_OK) {

        /*
         * a read error or no memory: the file may well be sound, so it
         * is not set aside but retried, at the longest interval
         */

        ngx_log_error(NGX_LOG_CRIT, msg->log, 0,
                      "queue: message %s is unreadable, deferred", msg->id);

        ngx_str_null(&state);

        ngx_mail_plus_delivery_defer(msg, ngx_time() + ctx->dcf->retry_max,
                                     &state, 0);
        return;
    }

    if (ngx_mail_plus_delivery_lookup(msg, ctx->mpcf,
                                      ngx_mail_plus_delivery_plan)
        == NGX_AGAIN)
    {
        return;
    }

    ngx_mail_plus_delivery_plan(msg);
}


/* the queue's records of the claimed file, read into the message */

static ngx_int_t
ngx_mail_plus_delivery_records(ngx_mail_plus_dmsg_t *msg, char **reason)
{
    ngx_int_t                      rc;
    ngx_uint_t                     i;
    ngx_mail_plus_rcpt_t          *rcpt;
    ngx_mail_plus_queue_rcpt_t    *qr;
    ngx_mail_plus_queue_record_t   r;

    ngx_memzero(&r, sizeof(ngx_mail_plus_queue_record_t));

    r.rcpts = ngx_array_create(msg->pool, 4,
                               sizeof(ngx_mail_plus_queue_rcpt_t));
    if (r.rcpts == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_mail_plus_spool_envelope(&r, msg->id, msg->load.head.data,
                                      msg->load.head.len, msg->load.size,
                                      reason);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_mail_plus_spool_state(&r, msg->load.state.data, msg->load.state.len);

    if (ngx_array_init(&msg->rcpts, msg->pool, r.rcpts->nelts,
                       sizeof(ngx_mail_plus_rcpt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    msg->body = r.body;
    msg->size = r.size;
    msg->arrival = r.arrival;
    msg->sender = r.sender;
    msg->ret = r.ret;
    msg->envid = r.envid;
    msg->body_type = r.body_type;
    msg->smtputf8 = r.smtputf8;
    msg->attempts = r.attempts;
    msg->warned = r.warned;

    qr = r.rcpts->elts;
    rcpt = msg->rcpts.elts;
    msg->rcpts.nelts = r.rcpts->nelts;

    for (i = 0; i < r.rcpts->nelts; i++, rcpt++) {
        ngx_memzero(rcpt, sizeof(ngx_mail_plus_rcpt_t));
        rcpt->addr = qr[i].addr;
        rcpt->login = qr[i].addr;
        rcpt->notify = qr[i].notify;
        rcpt->orcpt = qr[i].orcpt;
        rcpt->notify_mask = qr[i].notify_mask;
        rcpt->last = qr[i].error;
        rcpt->state = qr[i].done ? NGX_MAIL_PLUS_RCPT_DONE
                                 : NGX_MAIL_PLUS_RCPT_PENDING;
    }

    return NGX_OK;
}


/* recipients split by destination; each part is a job */

static void
ngx_mail_plus_delivery_plan(ngx_mail_plus_dmsg_t *msg)
{
    ngx_str_t               text;
    ngx_uint_t              i, j, njobs;
    ngx_mail_plus_job_t   **jobs, *job;
    ngx_mail_plus_dest_t   *dest;
    ngx_mail_plus_rcpt_t   *rcpt;

    rcpt = msg->rcpts.elts;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                   "delivery %s: loaded, %ui recipients, %ui attempts before",
                   msg->id, msg->rcpts.nelts, msg->attempts);

    jobs = ngx_pcalloc(msg->pool, msg->rcpts.nelts * sizeof(void *));
    if (jobs == NULL) {
        ngx_str_set(&text, "4.3.0 out of memory");
        goto defer_all;
    }

    /* the message is held while jobs are made and started */

    msg->jobs = 1;
    njobs = 0;

    if (ngx_time() - msg->arrival > ngx_mail_plus_delivery->dcf->lifetime) {
        goto done;
    }

    for (i = 0; i < msg->rcpts.nelts; i++) {

        if (rcpt[i].state != NGX_MAIL_PLUS_RCPT_PENDING) {
            continue;
        }

        dest = ngx_mail_plus_delivery_resolve(msg, &rcpt[i]);

        if (dest == NULL) {
            continue;
        }

        rcpt[i].dest = dest;

        ngx_log_debug3(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                       "delivery %s: <%V> goes to %V", msg->id,
                       &rcpt[i].addr, &dest->name);

        for (j = 0; j < njobs; j++) {
            if (jobs[j]->dest == dest
                && jobs[j]->nrcpts < NGX_MAIL_PLUS_JOB_RCPTS)
            {
                break;
            }
        }

        if (j == njobs) {
            job = ngx_pcalloc(msg->pool, sizeof(ngx_mail_plus_job_t));
            if (job == NULL) {
                ngx_str_set(&text, "4.3.0 out of memory");
                ngx_mail_plus_delivery_set(msg, &rcpt[i], 451, &text);
                continue;
            }

            job->msg = msg;
            job->dest = dest;
            job->result = ngx_mail_plus_delivery_result;
            jobs[njobs++] = job;
        }

        jobs[j]->rcpts[jobs[j]->nrcpts++] = i;
    }

    msg->jobs += njobs;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                   "delivery %s: %ui jobs", msg->id, njobs);

    for (j = 0; j < njobs; j++) {
        ngx_mail_plus_dest_submit(jobs[j]);
    }

done:

    if (--msg->jobs == 0) {
        ngx_mail_plus_delivery_finalize(msg);
    }

    return;

defer_all:

    for (i = 0; i < msg->rcpts.nelts; i++) {
        if (rcpt[i].state == NGX_MAIL_PLUS_RCPT_PENDING) {
            ngx_mail_plus_delivery_set(msg, &rcpt[i], 451, &text);
        }
    }

    ngx_mail_plus_delivery_finalize(msg);
}


/*
 * where a recipient goes: a local domain to its mailbox backend (LMTP if
 * the server has an lmtp port, else SMTP), others by queue_route, then
 * queue_relay_host; NULL: no destination, the recipient has its result
 */

static ngx_mail_plus_dest_t *
ngx_mail_plus_delivery_resolve(ngx_mail_plus_dmsg_t *msg,
    ngx_mail_plus_rcpt_t *rcpt)
{
    ngx_str_t  domain;

    ngx_mail_plus_delivery_domain(rcpt, &domain);

    if (ngx_mail_plus_delivery_is_local(&domain)) {
        return ngx_mail_plus_delivery_resolve_local(msg, rcpt);
    }

    return ngx_mail_plus_delivery_resolve_route(msg, rcpt, &domain);
}


/* the domain of a recipient: after its last "@", empty if none */

static void
ngx_mail_plus_delivery_domain(ngx_mail_plus_rcpt_t *rcpt, ngx_str_t *domain)
{
    u_char      *at;
    ngx_uint_t   i;

    at = NULL;

    for (i = rcpt->addr.len; i > 0; i--) {
        if (rcpt->addr.data[i - 1] == '@') {
            at = &rcpt->addr.data[i - 1];
            break;
        }
    }

    domain->data = at ? at + 1 : rcpt->addr.data + rcpt->addr.len;
    domain->len = rcpt->addr.data + rcpt->addr.len - domain->data;
}


ngx_uint_t
ngx_mail_plus_delivery_rcpt_local(ngx_mail_plus_rcpt_t *rcpt)
{
    ngx_str_t  domain;

    ngx_mail_plus_delivery_domain(rcpt, &domain);

    return ngx_mail_plus_delivery_is_local(&domain);
}


/* a local domain's recipient: the mailbox backend the router names */

static ngx_mail_plus_dest_t *
ngx_mail_plus_delivery_resolve_local(ngx_mail_plus_dmsg_t *msg,
    ngx_mail_plus_rcpt_t *rcpt)
{
    size_t                         len;
    ngx_int_t                      rc;
    ngx_str_t                      text;
    ngx_mail_plus_route_t          route;
    ngx_mail_plus_delivery_ctx_t  *ctx;

    ctx = ngx_mail_plus_delivery;

    if (ctx->mpcf == NULL) {
        ngx_str_set(&text, "4.3.5 no router for the local domain");
        ngx_mail_plus_delivery_set(msg, rcpt, 451, &text);
        return NULL;
    }

    /*
     * the same answer as at RCPT time: the same server, the same address;
     * with directories, their answer was asked before the plan
     */

    if (rcpt->check) {
        rc = rcpt->check->rc;
        route = rcpt->check->route;

    } else {
        rc = ngx_mail_plus_recipient(ctx->mpcf, &rcpt->addr, &route,
                                     msg->pool, msg->log);
    }

    if (rc == NGX_BUSY) {
        ngx_str_set(&text, "4.3.0 user directory unavailable");
        ngx_mail_plus_delivery_set(msg, rcpt, 451, &text);
        return NULL;
    }

    if (rc == NGX_ERROR) {
        ngx_str_set(&text, "4.3.0 router error");
        ngx_mail_plus_delivery_set(msg, rcpt, 451, &text);
        return NULL;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, msg->log, 0,
                      "recipient \"%V\" refused: %V",
                      &rcpt->addr, &route.reason);
        ngx_str_set(&text, "5.1.1 no such local recipient");
        ngx_mail_plus_delivery_set(msg, rcpt, 550, &text);
        return NULL;
    }

    if (route.status != NGX_MAIL_PLUS_ALLOW || route.server == NULL) {
        len = sizeof("4.4.3 no mailbox server: ") - 1 + route.reason.len;

        text.data = ngx_pnalloc(msg->pool, len);
        if (text.data == NULL) {
            ngx_str_set(&text, "4.4.3 no mailbox server");

        } else {
            text.len = ngx_sprintf(text.data, "4.4.3 no mailbox server: %V",
                                   &route.reason)
                       - text.data;
        }

        ngx_mail_plus_delivery_set(msg, rcpt, 451, &text);
        return NULL;
    }

    rcpt->login = route.login;

    return ngx_mail_plus_dest_get(route.server->addr.sockaddr,
                                  route.server->addr.socklen,
                                  route.port, route.protocol, NULL,
                                  route.server);
}


/* another domain's: its queue_route, else the relay host */

static ngx_mail_plus_dest_t *
ngx_mail_plus_delivery_resolve_route(ngx_mail_plus_dmsg_t *msg,
    ngx_mail_plus_rcpt_t *rcpt, ngx_str_t *name)
{
    ngx_str_t                       text, domain;
    ngx_uint_t                      i;
    ngx_mail_plus_relay_t          *r;
    ngx_mail_plus_delivery_conf_t  *dcf;

    dcf = ngx_mail_plus_delivery->dcf;
    domain = *name;

    r = dcf->routes ? dcf->routes->elts : NULL;

    for (i = 0; dcf->routes && i < dcf->routes->nelts; i++) {

        if (r[i].domain.data[0] == '.') {
            if (domain.len > r[i].domain.len
                && ngx_strncasecmp(domain.data + domain.len - r[i].domain.len,
                                   r[i].domain.data, r[i].domain.len)
                   == 0)
            {
                break;
            }

        } else if (domain.len == r[i].domain.len
                   && ngx_strncasecmp(domain.data, r[i].domain.data,
                                      domain.len)
                      == 0)
        {
            break;
        }
    }

    if (dcf->routes && i < dcf->routes->nelts) {
        r = &r[i];

    } else {
        r = dcf->relay;
    }

    if (r == NULL) {
        ngx_str_set(&text, "4.4.4 no route to the domain (no relay host)");
        ngx_mail_plus_delivery_set(msg, rcpt, 451, &text);
        return NULL;
    }

    return ngx_mail_plus_dest_get(r->addr.sockaddr, r->addr.socklen, 0,
                                  r->protocol, r, NULL);
}


static ngx_uint_t
ngx_mail_plus_delivery_is_local(ngx_str_t *domain)
{
    ngx_str_t   *d;
    ngx_uint_t   i;

    d = ngx_mail_plus_delivery->local.elts;

    for (i = 0; i < ngx_mail_plus_delivery->local.nelts; i++) {

        if (d[i].data[0] != '.') {
            if (domain->len == d[i].len
                && ngx_strncasecmp(domain->data, d[i].data, d[i].len) == 0)
            {
                return 1;
            }

        } else if (domain->len > d[i].len
                   && ngx_strncasecmp(domain->data + domain->len - d[i].len,
                                      d[i].data, d[i].len)
                      == 0)
        {
            return 1;
        }
    }

    return 0;
}


/*
 * the result of the i-th recipient of a job, or of each one with none yet
 * (NGX_MAIL_PLUS_JOB_ALL), and their log lines
 */

static void
ngx_mail_plus_delivery_result(ngx_mail_plus_job_t *job, ngx_uint_t i,
    ngx_uint_t code, ngx_str_t *text, ngx_uint_t remote)
{
    ngx_uint_t             n;
    ngx_mail_plus_rcpt_t  *rcpt, *r;

    rcpt = job->msg->rcpts.elts;

    if (i != NGX_MAIL_PLUS_JOB_ALL) {
        r = &rcpt[job->rcpts[i]];
        r->remote = remote;

        ngx_mail_plus_delivery_set(job->msg, r, code, text);
        return;
    }

    for (n = 0; n < job->nrcpts; n++) {
        r = &rcpt[job->rcpts[n]];

        if (r->state == NGX_MAIL_PLUS_RCPT_PENDING) {
            r->remote = remote;

            ngx_mail_plus_delivery_set(job->msg, r, code, text);
        }
    }
}


static void
ngx_mail_plus_delivery_set(ngx_mail_plus_dmsg_t *msg,
    ngx_mail_plus_rcpt_t *rcpt, ngx_uint_t code, ngx_str_t *text)
{
    u_char                 *p, *last;
    ngx_str_t               dsn, logged;
    const char             *status;
    ngx_atomic_t           *counter;
    ngx_mail_plus_stats_t  *stats;

    rcpt->code = code;

    rcpt->reply.data = ngx_pnalloc(msg->pool, text->len);
    if (rcpt->reply.data) {
        rcpt->reply.len = text->len;
        ngx_memcpy(rcpt->reply.data, text->data, text->len);

    } else {
        rcpt->reply.len = 0;
    }

    /* the enhanced status code (RFC 3463), after the reply code if any */

    p = rcpt->reply.data;
    last = p + rcpt->reply.len;

    if (rcpt->remote && last - p > 4) {
        p += 4;
    }

    dsn.data = p;

    while (p < last && ((*p >= '0' && *p <= '9') || *p == '.')) {
        p++;
    }

    dsn.len = p - dsn.data;

    if (dsn.len < 5 || dsn.data[0] != (u_char) ('0' + code / 100)) {
        if (code / 100 == 2) {
            ngx_str_set(&dsn, "2.0.0");

        } else if (code / 100 == 5) {
            ngx_str_set(&dsn, "5.0.0");

        } else {
            ngx_str_set(&dsn, "4.0.0");
        }
    }

    rcpt->dsn = dsn;

    stats = ngx_mail_plus_zone_stats();

    if (code / 100 == 2) {
        rcpt->state = NGX_MAIL_PLUS_RCPT_SENT;
        status = "sent";
        counter = stats ? &stats->sent : NULL;

    } else if (code / 100 == 5) {
        rcpt->state = NGX_MAIL_PLUS_RCPT_FAILED;
        status = "bounced";
        counter = stats ? &stats->bounced : NULL;

    } else {
        rcpt->state = NGX_MAIL_PLUS_RCPT_DEFERRED;
        status = "deferred";
        counter = stats ? &stats->deferred : NULL;
    }

    if (counter) {
        (void) ngx_atomic_fetch_add(counter, 1);
    }

    /* the next hop's reply may hold any byte: the log gets it escaped */

    if (ngx_mail_plus_text_log(msg->pool, &rcpt->reply, &logged) != NGX_OK) {
        ngx_str_null(&logged);
    }

    ngx_log_error(NGX_LOG_INFO, msg->log, 0,
                  "delivery %s: to=<%V>, relay=%V, delay=%T, dsn=%V, "
                  "status=%s, reply=\"%V\"",
                  msg->id, &rcpt->addr,
                  rcpt->dest ? &rcpt->dest->name : &ngx_mail_plus_delivery_none,
                  ngx_time() - msg->arrival, &rcpt->dsn, status, &logged);
}


/*
 * the scheduler's word that a job is over: what has no result yet takes
 * the code and text given
 */

static void
ngx_mail_plus_delivery_job_done(ngx_mail_plus_job_t *job, ngx_uint_t code,
    ngx_str_t *text)
{
    ngx_mail_plus_dmsg_t  *msg;

    msg = job->msg;

    if (code) {
        ngx_mail_plus_delivery_result(job, NGX_MAIL_PLUS_JOB_ALL, code, text,
                                      0);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                   "delivery %s: job for %V done, %ui left", msg->id,
                   &job->dest->name, msg->jobs - 1);

    if (--msg->jobs == 0) {
        ngx_mail_plus_delivery_finalize(msg);
    }
}


/*
 * every job of the attempt is done: recipients past the queue lifetime
 * fail, deliveries with NOTIFY=SUCCESS are reported, failures are
 * bounced, then the message is removed or deferred
 */

static void
ngx_mail_plus_delivery_finalize(ngx_mail_plus_dmsg_t *msg)
{
    ngx_int_t                       rc;
    ngx_str_t                       text;
    ngx_uint_t                      i, failed;
    ngx_mail_plus_rcpt_t           *rcpt;
    ngx_mail_plus_delivery_conf_t  *dcf;

    dcf = ngx_mail_plus_delivery->dcf;
    rcpt = msg->rcpts.elts;
    failed = 0;

    for (i = 0; i < msg->rcpts.nelts; i++) {

        if ((rcpt[i].state == NGX_MAIL_PLUS_RCPT_DEFERRED
             || rcpt[i].state == NGX_MAIL_PLUS_RCPT_PENDING)
            && ngx_time() - msg->arrival >= dcf->lifetime)
        {
            if (rcpt[i].reply.len) {
                text.len = rcpt[i].reply.len + sizeof("5.4.7 delivery time "
                                                      "expired, last: ") - 1;
                text.data = ngx_pnalloc(msg->pool, text.len);

                if (text.data) {
                    text.len = ngx_sprintf(text.data, "5.4.7 delivery time "
                                           "expired, last: %V",
                                           &rcpt[i].reply)
                               - text.data;

                } else {
                    ngx_str_set(&text, "5.4.7 delivery time expired");
                }

            } else {
                ngx_str_set(&text, "5.4.7 delivery time expired");
            }

            rcpt[i].remote = 0;
            ngx_mail_plus_delivery_set(msg, &rcpt[i], 554, &text);
        }

        if (rcpt[i].state == NGX_MAIL_PLUS_RCPT_FAILED) {
            failed++;
        }
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                   "delivery %s: every job done, %ui recipients failed",
                   msg->id, failed);

    /* a success report is not retried: the recipients are done */

    if (msg->sender.len) {
        (void) ngx_mail_plus_bounce(dcf, msg, NGX_MAIL_PLUS_DSN_SUCCESS,
                                    ngx_mail_plus_delivery_reported, NULL);
    }

    /*
     * a failure of a message from <> (a bounce itself, or a notice): no
     * one to report to but the postmaster
     */

    if (failed && msg->sender.len == 0) {
        (void) ngx_mail_plus_bounce_double(dcf, msg);
    }

    if (failed && msg->sender.len) {

        rc = ngx_mail_plus_bounce(dcf, msg, NGX_MAIL_PLUS_DSN_FAILED,
                                  ngx_mail_plus_delivery_bounced, msg);

        if (rc == NGX_AGAIN) {
            return;
        }

        /* NGX_DECLINED: NOTIFY= asked for no report */

        if (rc == NGX_ERROR) {

            /* no bounce could be queued: the failures are tried again */

            ngx_mail_plus_delivery_record(msg, 0);
            return;
        }
    }

    ngx_mail_plus_delivery_record(msg, 1);
}


/*
 * the last error of a recipient left to try, for its state file: this
 * attempt's reply, or that of an earlier one when this attempt had none
 * for it; 0 when there is none
 */

static ngx_uint_t
ngx_mail_plus_delivery_error(ngx_mail_plus_rcpt_t *rcpt)
{
    if (rcpt->state == NGX_MAIL_PLUS_RCPT_DEFERRED) {
        rcpt->last.time = ngx_time();
        rcpt->last.dsn = rcpt->dsn;
        rcpt->last.text = rcpt->reply;
        rcpt->last.escaped = 0;

        if (rcpt->dest) {
            rcpt->last.relay = rcpt->dest->name;

        } else {
            ngx_str_null(&rcpt->last.relay);
        }
    }

    return rcpt->last.time != 0;
}


static void
ngx_mail_plus_delivery_bounced(ngx_mail_plus_queue_msg_t *m)
{
    ngx_mail_plus_delivery_record(m->data, m->err == 0);
}


/* removed when every recipient is done; else a new state, and deferred */

static void
ngx_mail_plus_delivery_record(ngx_mail_plus_dmsg_t *msg, ngx_uint_t bounced)
{
    u_char                         *p;
    size_t                          len;
    ngx_int_t                       rc;
    time_t                          delay;
    ngx_str_t                       state;
    ngx_uint_t                      i, left;
    ngx_mail_plus_dest_t           *dest;
    ngx_mail_plus_rcpt_t           *rcpt;
    ngx_mail_plus_delivery_conf_t  *dcf;

    dcf = ngx_mail_plus_delivery ? ngx_mail_plus_delivery->dcf : NULL;

    msg->bounced = bounced;

    rcpt = msg->rcpts.elts;
    left = 0;
    len = ngx_mail_plus_spool_state_size(NULL);

    for (i = 0; i < msg->rcpts.nelts; i++) {

        if (rcpt[i].state == NGX_MAIL_PLUS_RCPT_FAILED && !bounced) {
            rcpt[i].state = NGX_MAIL_PLUS_RCPT_DEFERRED;
        }

        if (rcpt[i].state == NGX_MAIL_PLUS_RCPT_DEFERRED
            || rcpt[i].state == NGX_MAIL_PLUS_RCPT_PENDING)
        {
            left++;

            if (ngx_mail_plus_delivery_error(&rcpt[i])) {
                len += ngx_mail_plus_spool_error_size(&rcpt[i].addr,
                                                      &rcpt[i].last);
            }

        } else {
            len += ngx_mail_plus_spool_state_size(&rcpt[i].addr);
        }
    }

    if (dcf == NULL) {
        (void) ngx_mail_plus_queue_release(msg->spool, msg->id, msg->log);
        ngx_mail_plus_delivery_free(msg);
        return;
    }

    if (left == 0) {

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                       "delivery %s: done, removed", msg->id);

        /* the unlinks go to the thread pool */

        rc = ngx_mail_plus_queue_remove(msg->spool, msg->id,
                                        ngx_mail_plus_delivery_deferred, msg,
                                        msg->pool, msg->log);

        ngx_mail_plus_delivery_recorded(msg, rc);
        return;
    }

    /* a delay warning, once, to a sender that is not <> */

    if (dcf->delay_warning && !msg->warned && msg->sender.len
        && ngx_time() - msg->arrival >= dcf->delay_warning
        && ngx_mail_plus_bounce(dcf, msg, NGX_MAIL_PLUS_DSN_DELAYED,
                                ngx_mail_plus_delivery_reported, NULL)
           != NGX_ERROR)
    {
        msg->warned = 1;
    }

    state.data = ngx_pnalloc(msg->pool, len);

    if (state.data) {
        p = ngx_mail_plus_spool_state_write(state.data, msg->attempts + 1,
                                            msg->warned);

        for (i = 0; i < msg->rcpts.nelts; i++) {
            if (rcpt[i].state == NGX_MAIL_PLUS_RCPT_SENT
                || rcpt[i].state == NGX_MAIL_PLUS_RCPT_FAILED
                || rcpt[i].state == NGX_MAIL_PLUS_RCPT_DONE)
            {
                p = ngx_mail_plus_spool_state_done(p, &rcpt[i].addr);

            } else if (rcpt[i].last.time) {
                p = ngx_mail_plus_spool_error_write(p, &rcpt[i].addr,
                                                    &rcpt[i].last);
            }
        }

        state.len = p - state.data;

    } else {
        state.len = 0;   /* the old state stays: a duplicate, not a loss */
    }

    delay = dcf->retry_first;

    for (i = 0; i < msg->attempts && delay < dcf->retry_max; i++) {
        delay *= 2;
    }

    if (delay > dcf->retry_max) {
        delay = dcf->retry_max;
    }

    /*
     * recipients left for one destination only: the message waits in a
     * bucket of that destination, and not less than until its next
     * attempt when it is dead
     */

    dest = NULL;

    for (i = 0; i < msg->rcpts.nelts; i++) {
        if (rcpt[i].state != NGX_MAIL_PLUS_RCPT_DEFERRED
            && rcpt[i].state != NGX_MAIL_PLUS_RCPT_PENDING)
        {
            continue;
        }

        if (rcpt[i].dest == NULL || (dest && rcpt[i].dest != dest)) {
            dest = NULL;
            break;
        }

        dest = rcpt[i].dest;
    }

    if (dest && dest->retry > ngx_time() + delay) {
        delay = dest->retry - ngx_time();
    }

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                   "delivery %s: %ui recipients left, deferred for %T s, "
                   "for %V", msg->id, left, delay,
                   dest ? &dest->name : &ngx_mail_plus_delivery_none);

    ngx_mail_plus_delivery_defer(msg, ngx_time() + delay, &state,
                                 dest ? dest->key : 0);
}


/*
 * the state and the rename to deferred/ go to the thread pool; when it
 * cannot take them, they are tried again a little later
 */

static void
ngx_mail_plus_delivery_defer(ngx_mail_plus_dmsg_t *msg, time_t next,
    ngx_str_t *state, uint32_t key)
{
    ngx_int_t  rc;

    rc = ngx_mail_plus_queue_defer(msg->spool, msg->id, state, next, key,
                                   ngx_mail_plus_delivery_deferred, msg,
                                   msg->pool, msg->log);

    ngx_mail_plus_delivery_recorded(msg, rc);
}


/*
 * a file that cannot be parsed goes to corrupt/ (in the thread pool); it
 * is not bounced: its sender cannot be trusted either
 */

static void
ngx_mail_plus_delivery_corrupt(ngx_mail_plus_dmsg_t *msg, char *reason)
{
    ngx_int_t  rc;

    if (msg->fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(msg->fd);
        msg->fd = NGX_INVALID_FILE;
    }

    msg->reason = reason;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                   "delivery %s: corrupt, %s", msg->id, reason);

    rc = ngx_mail_plus_queue_corrupt(msg->spool, msg->id, reason,
                                     ngx_mail_plus_delivery_deferred, msg,
                                     msg->pool, msg->log);

    ngx_mail_plus_delivery_recorded(msg, rc);
}


/*
 * what a record of the attempt (removal, deferral, move to corrupt/) was
 * posted with: NGX_AGAIN, the thread calls back; NGX_BUSY, tried again
 * later; else the message is done with
 */

static void
ngx_mail_plus_delivery_recorded(ngx_mail_plus_dmsg_t *msg, ngx_int_t rc)
{
    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc == NGX_BUSY) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                       "delivery %s: thread pool busy, retry in %d ms",
                       msg->id, NGX_MAIL_PLUS_DELIVERY_RETRY);

        msg->retry.handler = ngx_mail_plus_delivery_retry;
        ngx_add_timer(&msg->retry, NGX_MAIL_PLUS_DELIVERY_RETRY);
        return;
    }

    ngx_mail_plus_delivery_free(msg);
}


/*
 * the thread pool was busy: the record of the attempt (removal or
 * deferral), or the move to corrupt/, is tried again
 */

static void
ngx_mail_plus_delivery_retry(ngx_event_t *ev)
{
    ngx_mail_plus_dmsg_t  *msg;

    msg = ev->data;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ev->log, 0,
                   "delivery %s: spool operation retried", msg->id);

    if (msg->reason) {
        ngx_mail_plus_delivery_corrupt(msg, msg->reason);
        return;
    }

    if (msg->rcpts.nelts == 0) {

        /* the envelope was not read */

        ngx_mail_plus_delivery_loaded(msg);
        return;
    }

    ngx_mail_plus_delivery_record(msg, msg->bounced);
}


/* a removal, a deferral or a move to corrupt/ is done */

static void
ngx_mail_plus_delivery_deferred(void *data)
{
    ngx_mail_plus_delivery_free(data);
}


static void
ngx_mail_plus_delivery_reported(ngx_mail_plus_queue_msg_t *m)
{
    if (m->err) {
        ngx_log_error(NGX_LOG_ERR, m->log, m->err,
                      "delivery: notification %s not queued", m->id);
    }
}


static void
ngx_mail_plus_delivery_free(ngx_mail_plus_dmsg_t *msg)
{
    ngx_mail_plus_delivery_ctx_t  *ctx;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                   "delivery %s: freed", msg->id);

    if (msg->retry.timer_set) {
        ngx_del_timer(&msg->retry);
    }

    if (msg->fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(msg->fd);
    }

    ngx_queue_remove(&msg->queue);

    ngx_mail_plus_delivery_lookup_free(msg);

    ngx_destroy_pool(msg->pool);

    ctx = ngx_mail_plus_delivery;

    if (ctx == NULL) {
        return;
    }

    ctx->nmsgs--;

    /* a backlog: claimed again once half of the room is free */

    if (ctx->more && ctx->nmsgs <= ctx->dcf->active_limit / 2
        && !(ngx_exiting || ngx_terminate || ngx_quit))
    {
        ctx->more = 0;
        ngx_mail_plus_delivery_kick(ctx);
    }
}
