
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"
#include "ngx_mail_plus_smtp.h"
#include "ngx_mail_plus_smtp_session.h"


/*
 * The SMTP store-and-forward session: the whole dialogue ends in nginx;
 * each message is streamed to a temporary file of the spool and committed
 * (in a thread) before "250 2.0.0 Ok: queued as ID".
 *
 * Input is processed as long as it lasts, so that a pipelined client gets
 * all its replies in one write; the session waits without reading while a
 * password is checked or a message committed.
 */


#define NGX_MAIL_PLUS_SMTP_OUT_SIZE     4096
#define NGX_MAIL_PLUS_SMTP_OUT_SPARE    1024   /* the longest reply */
#define NGX_MAIL_PLUS_SMTP_WRITE_SIZE   32768  /* content to the file */
#define NGX_MAIL_PLUS_SMTP_READ_SIZE    16384
#define NGX_MAIL_PLUS_SMTP_MAX_HELO     255
#define NGX_MAIL_PLUS_SMTP_LOOPS        32
#define NGX_MAIL_PLUS_SMTP_JUNK         100    /* NOOP, RSET, VRFY, HELP */


typedef enum {
    ngx_mail_plus_st_command = 0,
    ngx_mail_plus_st_auth_plain,
    ngx_mail_plus_st_auth_login_username,
    ngx_mail_plus_st_auth_login_password,
    ngx_mail_plus_st_auth_check,
    ngx_mail_plus_st_auth_delay,
    ngx_mail_plus_st_rcpt_verify,
    ngx_mail_plus_st_data,
    ngx_mail_plus_st_bdat,
    ngx_mail_plus_st_commit,
    ngx_mail_plus_st_starttls
} ngx_mail_plus_smtp_state_e;


typedef struct {
    ngx_mail_plus_smtp_state_e   state;
    ngx_buf_t                   *out;
    ngx_uint_t                   errors;
    ngx_uint_t                   junk;        /* since the last message */
    ngx_uint_t                   queued;      /* messages */
    ngx_connection_t            *connection;
    ngx_uint_t                   skip;        /* of the line reader */

    u_char                       helo[NGX_MAIL_PLUS_SMTP_MAX_HELO];
    size_t                       helo_len;
    ngx_str_t                    login;

    ngx_mail_plus_check_t       *check;
    ngx_str_t                    auth_reply;  /* after the delay */

    ngx_mail_plus_verify_t      *verify;      /* a recipient probe */
    ngx_pool_t                  *vpool;       /*   what RCPT waits with */
    ngx_mail_plus_smtp_path_t    vpath;

    ngx_msec_t                   since;       /* the last reply sent */
    off_t                        received;    /* since the 354 or BDAT */

    ngx_str_t                    client_key;  /* of the session limit */
    u_char                       client_buf[2 + NGX_MAIL_PLUS_CLIENT_KEY_LEN];

    /* the transaction */

    ngx_pool_t                  *tx;
    ngx_str_t                    from;
    ngx_array_t                 *rcpts;       /* ngx_str_t */
    ngx_array_t                 *dsn;         /* ngx_str_t, of each rcpt */
    ngx_str_t                    ret;         /* RFC 3461 */
    ngx_str_t                    envid;
    ngx_uint_t                   body;
    ngx_uint_t                   rcpt_tries;
    ngx_mail_plus_queue_msg_t   *msg;
    ngx_mail_plus_smtp_data_t    data;
    u_char                      *wbuf;
    u_char                      *wpos;
    u_char                      *wend;
    off_t                        bdat_left;
    ngx_str_t                    bdat_reply;  /* of a discarded chunk */

    unsigned                     esmtp:1;
    unsigned                     authenticated:1;
    unsigned                     trusted:1;
    unsigned                     in_tx:1;
    unsigned                     smtputf8:1;
    unsigned                     bdat_used:1;
    unsigned                     bdat_last:1;
    unsigned                     discard:1;
    unsigned                     oversize:1;
    unsigned                     spool_error:1;
    unsigned                     quit:1;
    unsigned                     client_limited:1;
} ngx_mail_plus_smtp_ctx_t;


#if (NGX_DEBUG)

/* for the debug log: the states and the verbs by their numbers */

static char  *ngx_mail_plus_smtp_states[] = {
    "command", "auth plain", "auth login username", "auth login password",
    "auth check", "auth delay", "rcpt verify", "data", "bdat", "commit",
    "starttls"
};

static char  *ngx_mail_plus_smtp_verb_names[] = {
    "unknown", "HELO", "EHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET",
    "NOOP", "QUIT", "VRFY", "EXPN", "HELP", "STARTTLS", "AUTH",
    "not implemented"
};

#endif


static void ngx_mail_plus_smtp_start(ngx_mail_session_t *s,
    ngx_connection_t *c);
static void ngx_mail_plus_smtp_cleanup(void *data);
static void ngx_mail_plus_smtp_write_handler(ngx_event_t *wev);
static void ngx_mail_plus_smtp_run(ngx_mail_session_t *s,
    ngx_connection_t *c);
static ssize_t ngx_mail_plus_smtp_recv(ngx_mail_session_t *s,
    ngx_connection_t *c);
static void ngx_mail_plus_smtp_wait(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx);
static ngx_msec_t ngx_mail_plus_smtp_deadline(ngx_mail_plus_smtp_ctx_t *ctx,
    ngx_mail_plus_smtp_srv_conf_t *sscf);
static ngx_int_t ngx_mail_plus_smtp_process(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx);
static ngx_int_t ngx_mail_plus_smtp_flush(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx);
static void ngx_mail_plus_smtp_command(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *line);
static void ngx_mail_plus_smtp_dispatch(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx, ngx_uint_t cmd,
    ngx_str_t *arg);
static void ngx_mail_plus_smtp_helo(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg,
    ngx_uint_t esmtp);
static void ngx_mail_plus_smtp_mail(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg);
static void ngx_mail_plus_smtp_rcpt(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg);
static ngx_int_t ngx_mail_plus_smtp_local(ngx_mail_plus_smtp_srv_conf_t *sscf,
    ngx_str_t *domain);
static ngx_int_t ngx_mail_plus_smtp_user(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx,
    ngx_mail_plus_smtp_path_t *path);
static void ngx_mail_plus_smtp_verified(void *data, ngx_int_t rc);
static void ngx_mail_plus_smtp_rcpt_refused(ngx_mail_session_t *s,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *addr, ngx_int_t rc);
static void ngx_mail_plus_smtp_rcpt_add(ngx_mail_session_t *s,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_mail_plus_smtp_path_t *path);
static ngx_int_t ngx_mail_plus_smtp_limit(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx);
static void ngx_mail_plus_smtp_data(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg);
static void ngx_mail_plus_smtp_bdat(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg);
static ngx_int_t ngx_mail_plus_smtp_open(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx);
static ngx_int_t ngx_mail_plus_smtp_content(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx);
static void ngx_mail_plus_smtp_write_out(ngx_mail_plus_smtp_ctx_t *ctx);
static void ngx_mail_plus_smtp_add_fields(ngx_mail_session_t *s,
    ngx_mail_plus_smtp_ctx_t *ctx);
static void ngx_mail_plus_smtp_end(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx);
static void ngx_mail_plus_smtp_committed(ngx_mail_plus_queue_msg_t *m);
static void ngx_mail_plus_smtp_reset(ngx_mail_plus_smtp_ctx_t *ctx);
static void ngx_mail_plus_smtp_auth(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg);
static void ngx_mail_plus_smtp_auth_line(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *line);
static void ngx_mail_plus_smtp_auth_start(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx);
static void ngx_mail_plus_smtp_auth_checked(ngx_mail_plus_check_t *check);
static void ngx_mail_plus_smtp_auth_done(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx);
static void ngx_mail_plus_smtp_set_state(ngx_mail_plus_smtp_ctx_t *ctx,
    ngx_mail_plus_smtp_state_e state);
static void ngx_mail_plus_smtp_reply(ngx_mail_plus_smtp_ctx_t *ctx,
    char *text);
static void ngx_mail_plus_smtp_error(ngx_mail_session_t *s,
    ngx_mail_plus_smtp_ctx_t *ctx, char *text);
static void ngx_mail_plus_smtp_count_error(ngx_mail_session_t *s,
    ngx_mail_plus_smtp_ctx_t *ctx);


void
ngx_mail_plus_smtp_init_session(ngx_mail_session_t *s, ngx_connection_t *c)
{
    size_t                          size;
    ngx_pool_cleanup_t             *cln;
    ngx_mail_plus_smtp_ctx_t       *ctx;
    ngx_mail_core_srv_conf_t       *cscf;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;

    sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);
    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    ctx = ngx_pcalloc(c->pool, sizeof(ngx_mail_plus_smtp_ctx_t));
    if (ctx == NULL) {
        ngx_mail_close_connection(c);
        return;
    }

    ngx_mail_set_ctx(s, ctx, ngx_mail_plus_smtp_module);

    cln = ngx_pool_cleanup_add(c->pool, 0);
    if (cln == NULL) {
        ngx_mail_close_connection(c);
        return;
    }

    cln->handler = ngx_mail_plus_smtp_cleanup;
    cln->data = ctx;

    ctx->connection = c;
    ctx->since = ngx_current_msec;

    size = ngx_max(sscf->max_line_length + 2, NGX_MAIL_PLUS_SMTP_READ_SIZE);

    s->buffer = ngx_create_temp_buf(c->pool, size);
    ctx->out = ngx_create_temp_buf(c->pool, NGX_MAIL_PLUS_SMTP_OUT_SIZE);

    if (s->buffer == NULL || ctx->out == NULL
        || ngx_array_init(&s->args, c->pool, 2, sizeof(ngx_str_t)) != NGX_OK)
    {
        ngx_mail_close_connection(c);
        return;
    }

    if (sscf->trusted != NULL
        && ngx_cidr_match(c->sockaddr, sscf->trusted) == NGX_OK)
    {
        ctx->trusted = 1;
    }

    switch (ngx_mail_plus_smtp_limit(s, c, ctx)) {

    case NGX_OK:
        break;

    case NGX_BUSY:
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: session refused with 421, too many");

        ctx->out->last = ngx_sprintf(ctx->out->last,
                                     "421 4.7.0 %V Error: too many "
                                     "connections from your network" CRLF,
                                     &cscf->server_name);
        ctx->quit = 1;
        ngx_mail_plus_smtp_start(s, c);
        return;

    default:
        ngx_mail_close_connection(c);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: session of %V, greeting 220, trusted: %ui",
                   &c->addr_text, (ngx_uint_t) ctx->trusted);

    ctx->out->last = ngx_sprintf(ctx->out->last, "220 %V ESMTP ready" CRLF,
                                 &cscf->server_name);

    ngx_mail_plus_smtp_start(s, c);
}


/*
 * "smtp_client_sessions": concurrent sessions from one client network
 * (ngx_mail_plus_limit.c counts them); trusted networks are not counted;
 * NGX_BUSY: over the limit
 */

static ngx_int_t
ngx_mail_plus_smtp_limit(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    ngx_mail_plus_main_conf_t      *mpcf;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;

    sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);

    if (sscf->client_sessions == 0 || ctx->trusted) {
        return NGX_OK;
    }

    mpcf = ngx_mail_get_module_main_conf(s, ngx_mail_plus_module);

    ctx->client_buf[0] = 's';
    ctx->client_buf[1] = ':';

    ctx->client_key.data = ctx->client_buf;
    ctx->client_key.len = 2 + ngx_mail_plus_client_key(mpcf, c->sockaddr,
                                                       ctx->client_buf + 2);

    switch (ngx_mail_plus_limit_acquire(&ctx->client_key,
                                        sscf->client_sessions, c->log))
    {
    case NGX_OK:
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: session of %V counted", &c->addr_text);
        ctx->client_limited = 1;
        return NGX_OK;

    case NGX_DONE:
        return NGX_OK;

    case NGX_BUSY:
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "too many smtp sessions from the network of %V",
                      &c->addr_text);
        return NGX_BUSY;

    default:
        return NGX_ERROR;
    }
}


/* after STARTTLS: everything known before it is forgotten (RFC 3207 4.2) */

void
ngx_mail_plus_smtp_init_protocol(ngx_event_t *rev)
{
    ngx_connection_t          *c;
    ngx_mail_session_t        *s;
    ngx_mail_plus_smtp_ctx_t  *ctx;

    c = rev->data;
    s = c->data;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_smtp_module);

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: TLS handshake done, session begins again");

    ngx_mail_plus_smtp_reset(ctx);

    ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);
    ctx->helo_len = 0;
    ctx->esmtp = 0;
    ctx->authenticated = 0;
    ctx->login.len = 0;
    ctx->skip = 0;

    s->buffer->pos = s->buffer->start;
    s->buffer->last = s->buffer->start;
    s->login.len = 0;

    ngx_mail_plus_smtp_start(s, c);
}


static void
ngx_mail_plus_smtp_start(ngx_mail_session_t *s, ngx_connection_t *c)
{
    c->log->action = "in smtp store-and-forward state";

    c->read->handler = ngx_mail_plus_smtp_auth_state;
    c->write->handler = ngx_mail_plus_smtp_write_handler;

    ngx_mail_plus_smtp_run(s, c);
}


void
ngx_mail_plus_smtp_auth_state(ngx_event_t *rev)
{
    ngx_connection_t          *c;
    ngx_mail_session_t        *s;
    ngx_mail_plus_smtp_ctx_t  *ctx;
    ngx_mail_core_srv_conf_t  *cscf;

    c = rev->data;
    s = c->data;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_smtp_module);

    if (c->close) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: worker shutting down, reply 421");

        cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

        ctx->out->last = ngx_sprintf(ctx->out->last,
                                     "421 4.3.2 %V Service shutting down"
                                     CRLF, &cscf->server_name);
        ctx->quit = 1;

        ngx_mail_plus_smtp_run(s, c);
        return;
    }

    if (rev->timedout) {
        rev->timedout = 0;

        if (ctx->state == ngx_mail_plus_st_auth_delay) {
            ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                           "smtp: auth delay timer fired");

            ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);
            ngx_mail_plus_smtp_error(s, ctx, (char *) ctx->auth_reply.data);

        } else {
            ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                          "client timed out");
            c->timedout = 1;

            ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                           "smtp: read timer fired in state \"%s\", "
                           "reply 421", ngx_mail_plus_smtp_states[ctx->state]);

            cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

            ctx->out->last = ngx_sprintf(ctx->out->last,
                                         "421 4.4.2 %V Error: timeout "
                                         "exceeded" CRLF,
                                         &cscf->server_name);
            ctx->quit = 1;
        }
    }

    ngx_mail_plus_smtp_run(s, c);
}


static void
ngx_mail_plus_smtp_cleanup(void *data)
{
    ngx_mail_plus_smtp_ctx_t *ctx = data;

    /* one line a session */

    ngx_log_error(NGX_LOG_INFO, ctx->connection->log, 0,
                  "smtp session done: %ui messages queued, %ui errors%s",
                  ctx->queued, ctx->errors,
                  ctx->connection->timedout ? ", timed out" : "");

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "smtp: session closed in state \"%s\"",
                   ngx_mail_plus_smtp_states[ctx->state]);

    if (ctx->check) {
        ngx_mail_plus_check_free(ctx->check);
        ctx->check = NULL;
    }

    if (ctx->verify) {
        ngx_mail_plus_verify_cancel(ctx->verify);
        ctx->verify = NULL;
    }

    if (ctx->vpool) {
        ngx_destroy_pool(ctx->vpool);
        ctx->vpool = NULL;
    }

    if (ctx->client_limited) {
        ngx_mail_plus_limit_release(&ctx->client_key);
        ctx->client_limited = 0;
    }

    ngx_mail_plus_smtp_reset(ctx);
}


static void
ngx_mail_plus_smtp_write_handler(ngx_event_t *wev)
{
    ngx_connection_t          *c;
    ngx_mail_session_t        *s;
    ngx_mail_plus_smtp_ctx_t  *ctx;

    c = wev->data;
    s = c->data;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_smtp_module);

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "client timed out");
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: send timer fired, closing");
        c->timedout = 1;
        ngx_mail_close_connection(c);
        return;
    }

    if (ctx->out->pos == ctx->out->last) {
        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            ngx_mail_close_connection(c);
        }

        return;
    }

    ngx_mail_plus_smtp_run(s, c);
}


/*
 * the heart of the session: process what was read, read more, send the
 * replies; at most a few rounds, then the event is posted again
 */

static void
ngx_mail_plus_smtp_run(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ssize_t                    size;
    ngx_int_t                  rc;
    ngx_uint_t                 i;
    ngx_mail_plus_smtp_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_smtp_module);

    for (i = 0; i < NGX_MAIL_PLUS_SMTP_LOOPS; i++) {

        rc = ngx_mail_plus_smtp_process(s, c, ctx);

        if (rc == NGX_BUSY) {

            /* the replies fill the output buffer */

            rc = ngx_mail_plus_smtp_flush(s, c, ctx);

            if (rc == NGX_OK) {
                continue;
            }

            return;
        }

        if (rc == NGX_DONE) {
            break;
        }

        /* more input is needed */

        size = ngx_mail_plus_smtp_recv(s, c);

        if (size == NGX_AGAIN) {
            break;
        }

        if (size == NGX_ERROR || size == 0) {
            ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                           "smtp: client closed the connection in state "
                           "\"%s\"", ngx_mail_plus_smtp_states[ctx->state]);
            ngx_mail_close_connection(c);
            return;
        }

        if (ctx->state == ngx_mail_plus_st_data
            || ctx->state == ngx_mail_plus_st_bdat)
        {
            ctx->received += size;
        }
    }

    if (i == NGX_MAIL_PLUS_SMTP_LOOPS) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: input left, read event posted");
        ngx_post_event(c->read, &ngx_posted_events);
    }

    rc = ngx_mail_plus_smtp_flush(s, c, ctx);

    if (rc != NGX_OK) {
        return;
    }

    ngx_mail_plus_smtp_wait(s, c, ctx);
}


/* the input buffer made room for more, and read into */

static ssize_t
ngx_mail_plus_smtp_recv(ngx_mail_session_t *s, ngx_connection_t *c)
{
    size_t      n;
    ssize_t     size;
    ngx_buf_t  *b;

    b = s->buffer;

    if (b->pos == b->last) {
        b->pos = b->start;
        b->last = b->start;

    } else if (b->pos != b->start) {
        n = b->last - b->pos;
        ngx_memmove(b->start, b->pos, n);
        b->pos = b->start;
        b->last = b->start + n;
    }

    if (b->last == b->end) {
        /* cannot happen: the line reader discards long lines */
        b->pos = b->start;
        b->last = b->start;
    }

    size = c->recv(c, b->last, b->end - b->last);

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: recv %z", size);

    if (size > 0) {
        b->last += size;
    }

    return size;
}


/*
 * the replies are sent: the session waits for the client with the timer
 * of its state, or hands the connection to the TLS handshake
 */

static void
ngx_mail_plus_smtp_wait(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    ngx_msec_t                      timeout;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;

    sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);

    if (ctx->state == ngx_mail_plus_st_starttls) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: connection handed to the TLS handshake");

        c->idle = 0;
        c->read->handler = ngx_mail_starttls_handler;

        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        ngx_add_timer(c->read, sscf->command_timeout);

        if (c->read->ready) {
            ngx_post_event(c->read, &ngx_posted_events);
        }

        return;
    }

    switch (ctx->state) {

    case ngx_mail_plus_st_auth_delay:
        return;

    case ngx_mail_plus_st_command:
    case ngx_mail_plus_st_data:
    case ngx_mail_plus_st_bdat:
        timeout = ngx_mail_plus_smtp_deadline(ctx, sscf);
        break;

    default:
        timeout = sscf->command_timeout;
    }

    /*
     * a password check or a commit in a thread keeps its timer too: a
     * worker that shuts down gracefully waits for it
     */

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: waiting in state \"%s\", read timer %M",
                   ngx_mail_plus_smtp_states[ctx->state], timeout);

    ngx_add_timer(c->read, timeout);

    /* waiting for a command: a worker that shuts down may close it */

    c->idle = (ctx->state == ngx_mail_plus_st_command);

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_mail_close_connection(c);
    }
}


/*
 * What is left of the time a client has.  A byte does not buy time: a
 * command must be complete within smtp_command_timeout of the last reply,
 * and the message data within smtp_data_timeout of the 354 (or of the
 * reply to the last BDAT), plus a second for every smtp_data_min_rate
 * bytes received, so that a client trickling a byte every few seconds is
 * closed however long it keeps it up, and a large message sent at a fair
 * rate is not.
 */

static ngx_msec_t
ngx_mail_plus_smtp_deadline(ngx_mail_plus_smtp_ctx_t *ctx,
    ngx_mail_plus_smtp_srv_conf_t *sscf)
{
    ngx_msec_t  limit, elapsed;

    if (ctx->state == ngx_mail_plus_st_command) {
        limit = sscf->command_timeout;

    } else {
        limit = sscf->data_timeout;

        if (sscf->data_min_rate) {
            limit += (ngx_msec_t) ngx_min(ctx->received
                                          / (off_t) sscf->data_min_rate,
                                          86400) * 1000;
        }
    }

    elapsed = ngx_current_msec - ctx->since;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "smtp: deadline, %M of %M ms used, %O bytes",
                   elapsed, limit, ctx->received);

    return elapsed < limit ? limit - elapsed : 1;
}


/*
 * NGX_AGAIN: input is needed; NGX_BUSY: the replies are to be sent first;
 * NGX_DONE: the session waits (a thread, QUIT, STARTTLS)
 */

static ngx_int_t
ngx_mail_plus_smtp_process(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    ngx_int_t                       rc;
    ngx_str_t                       line;
    ngx_buf_t                      *b;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;

    sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);

    b = s->buffer;

    for ( ;; ) {

        if (ctx->quit) {
            return NGX_DONE;
        }

        switch (ctx->state) {
        case ngx_mail_plus_st_auth_check:
        case ngx_mail_plus_st_auth_delay:
        case ngx_mail_plus_st_rcpt_verify:
        case ngx_mail_plus_st_commit:
        case ngx_mail_plus_st_starttls:
            return NGX_DONE;
        default:
            break;
        }

        if ((size_t) (ctx->out->end - ctx->out->last)
            < NGX_MAIL_PLUS_SMTP_OUT_SPARE)
        {
            return NGX_BUSY;
        }

        if (ctx->state == ngx_mail_plus_st_data
            || ctx->state == ngx_mail_plus_st_bdat)
        {
            rc = ngx_mail_plus_smtp_content(s, c, ctx);

            if (rc == NGX_AGAIN) {
                return NGX_AGAIN;
            }

            continue;
        }

        if (b->pos == b->last) {
            return NGX_AGAIN;
        }

        rc = ngx_mail_plus_smtp_read_line(b, sscf->max_line_length, &line,
                                          &ctx->skip);

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        if (rc == NGX_MAIL_PLUS_SMTP_TOO_LONG) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "client sent too long command line");
            ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                           "smtp: line too long, discarded");

            if (ctx->state != ngx_mail_plus_st_command) {
                ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);
            }

            ngx_mail_plus_smtp_error(s, ctx,
                                     "500 5.5.6 Error: line too long");
            continue;
        }

        if (ctx->state == ngx_mail_plus_st_command) {
            ngx_mail_plus_smtp_command(s, c, ctx, &line);

        } else {
            ngx_mail_plus_smtp_auth_line(s, c, ctx, &line);
        }
    }
}


static ngx_int_t
ngx_mail_plus_smtp_flush(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    ssize_t                         n;
    ngx_buf_t                      *out;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;

    out = ctx->out;

    if (out->pos < out->last) {
        ctx->since = ngx_current_msec;
        ctx->received = 0;
    }

    while (out->pos < out->last) {

        n = c->send(c, out->pos, out->last - out->pos);

        if (n == NGX_ERROR) {
            ngx_mail_close_connection(c);
            return NGX_ERROR;
        }

        if (n == NGX_AGAIN) {
            sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);

            ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                           "smtp: %uz bytes of replies wait, send timer %M",
                           (size_t) (out->last - out->pos),
                           sscf->send_timeout);

            ngx_add_timer(c->write, sscf->send_timeout);

            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_mail_close_connection(c);
                return NGX_ERROR;
            }

            return NGX_AGAIN;
        }

        out->pos += n;
    }

    out->pos = out->start;
    out->last = out->start;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (ctx->quit) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: last reply sent, closing");
        ngx_mail_close_connection(c);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_mail_plus_smtp_command(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *line)
{
    ngx_str_t   arg;
    ngx_uint_t  cmd;

    cmd = ngx_mail_plus_smtp_parse_command(line, &arg);

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: command %s read, %uz bytes of argument",
                   ngx_mail_plus_smtp_verb_names[cmd], arg.len);

#if (NGX_MAIL_SSL)

    if (ngx_mail_starttls_only(s, c)) {

        switch (cmd) {
        case NGX_MAIL_PLUS_SMTP_HELO:
        case NGX_MAIL_PLUS_SMTP_EHLO:
        case NGX_MAIL_PLUS_SMTP_QUIT:
        case NGX_MAIL_PLUS_SMTP_NOOP:
        case NGX_MAIL_PLUS_SMTP_RSET:
        case NGX_MAIL_PLUS_SMTP_STARTTLS:
        case NGX_MAIL_PLUS_SMTP_UNKNOWN:
            break;

        default:
            ngx_mail_plus_smtp_error(s, ctx, "530 5.7.0 Must issue a "
                                     "STARTTLS command first");
            return;
        }
    }

#endif

    ngx_mail_plus_smtp_dispatch(s, c, ctx, cmd, &arg);

    switch (cmd) {

    case NGX_MAIL_PLUS_SMTP_RSET:
    case NGX_MAIL_PLUS_SMTP_NOOP:
    case NGX_MAIL_PLUS_SMTP_VRFY:
    case NGX_MAIL_PLUS_SMTP_HELP:

        /* many of them only keep a connection busy: they count as errors */

        if (++ctx->junk > NGX_MAIL_PLUS_SMTP_JUNK) {
            ngx_mail_plus_smtp_count_error(s, ctx);
        }

        break;

    default:
        break;
    }
}


static void
ngx_mail_plus_smtp_dispatch(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_uint_t cmd, ngx_str_t *arg)
{
    ngx_mail_core_srv_conf_t  *cscf;
#if (NGX_MAIL_SSL)
    ngx_mail_ssl_conf_t       *sslcf;

    sslcf = ngx_mail_get_module_srv_conf(s, ngx_mail_ssl_module);
#endif

    switch (cmd) {

    case NGX_MAIL_PLUS_SMTP_HELO:
    case NGX_MAIL_PLUS_SMTP_EHLO:
        ngx_mail_plus_smtp_helo(s, c, ctx, arg,
                                cmd == NGX_MAIL_PLUS_SMTP_EHLO);
        return;

    case NGX_MAIL_PLUS_SMTP_MAIL:
        ngx_mail_plus_smtp_mail(s, c, ctx, arg);
        return;

    case NGX_MAIL_PLUS_SMTP_RCPT:
        ngx_mail_plus_smtp_rcpt(s, c, ctx, arg);
        return;

    case NGX_MAIL_PLUS_SMTP_DATA:
        ngx_mail_plus_smtp_data(s, c, ctx, arg);
        return;

    case NGX_MAIL_PLUS_SMTP_BDAT:
        ngx_mail_plus_smtp_bdat(s, c, ctx, arg);
        return;

    case NGX_MAIL_PLUS_SMTP_AUTH:
        ngx_mail_plus_smtp_auth(s, c, ctx, arg);
        return;

    case NGX_MAIL_PLUS_SMTP_RSET:
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: RSET, transaction open: %ui",
                       (ngx_uint_t) ctx->in_tx);
        ngx_mail_plus_smtp_reset(ctx);
        ngx_mail_plus_smtp_reply(ctx, "250 2.0.0 Ok");
        return;

    case NGX_MAIL_PLUS_SMTP_NOOP:
        ngx_mail_plus_smtp_reply(ctx, "250 2.0.0 Ok");
        return;

    case NGX_MAIL_PLUS_SMTP_QUIT:
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: QUIT, reply 221");
        cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);
        ctx->out->last = ngx_sprintf(ctx->out->last,
                                     "221 2.0.0 %V closing connection" CRLF,
                                     &cscf->server_name);
        ctx->quit = 1;
        return;

    case NGX_MAIL_PLUS_SMTP_VRFY:
        if (arg->len == 0) {
            ngx_mail_plus_smtp_error(s, ctx, "501 5.5.4 Syntax: VRFY address");
            return;
        }

        ngx_mail_plus_smtp_reply(ctx, "252 2.0.0 Cannot VRFY user, but will "
                                 "accept message and attempt delivery");
        return;

    case NGX_MAIL_PLUS_SMTP_EXPN:
    case NGX_MAIL_PLUS_SMTP_NOTIMPL:
        ngx_mail_plus_smtp_error(s, ctx,
                                 "502 5.5.1 Error: command not implemented");
        return;

    case NGX_MAIL_PLUS_SMTP_HELP:
        ngx_mail_plus_smtp_reply(ctx, "214 2.0.0 Commands: HELO EHLO MAIL "
                                 "RCPT DATA BDAT RSET NOOP VRFY HELP QUIT "
                                 "STARTTLS AUTH");
        return;

    case NGX_MAIL_PLUS_SMTP_STARTTLS:

#if (NGX_MAIL_SSL)

        if (c->ssl) {
            ngx_mail_plus_smtp_error(s, ctx,
                                     "503 5.5.1 Error: TLS already active");
            return;
        }

        if (sslcf->starttls == NGX_MAIL_STARTTLS_OFF) {
            ngx_mail_plus_smtp_error(s, ctx,
                                     "502 5.5.1 Error: command not "
                                     "implemented");
            return;
        }

        if (arg->len) {
            ngx_mail_plus_smtp_error(s, ctx, "501 5.5.4 Syntax: STARTTLS");
            return;
        }

        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: STARTTLS accepted, handshake next");

        ngx_mail_plus_smtp_reply(ctx, "220 2.0.0 Ready to start TLS");

        /* whatever the client sent after STARTTLS is not trusted */

        s->buffer->pos = s->buffer->start;
        s->buffer->last = s->buffer->start;

        ngx_mail_plus_smtp_reset(ctx);
        ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_starttls);
        return;

#else
        ngx_mail_plus_smtp_error(s, ctx,
                                 "502 5.5.1 Error: command not implemented");
        return;
#endif

    default:
        ngx_mail_plus_smtp_error(s, ctx,
                                 "500 5.5.2 Error: command not recognized");
        return;
    }
}


static void
ngx_mail_plus_smtp_helo(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg, ngx_uint_t esmtp)
{
    u_char                         *p, *last;
    ngx_buf_t                      *out;
    ngx_mail_core_srv_conf_t       *cscf;
    ngx_mail_plus_main_conf_t      *mpcf;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;
#if (NGX_MAIL_SSL)
    ngx_mail_ssl_conf_t            *sslcf;
#endif

    if (arg->len == 0 || arg->len > NGX_MAIL_PLUS_SMTP_MAX_HELO) {
        ngx_mail_plus_smtp_error(s, ctx, esmtp
                                 ? "501 5.5.4 Syntax: EHLO hostname"
                                 : "501 5.5.4 Syntax: HELO hostname");
        return;
    }

    last = arg->data + arg->len;

    for (p = arg->data; p < last; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            ngx_mail_plus_smtp_error(s, ctx,
                                     "501 5.5.4 Error: invalid hostname");
            return;
        }
    }

    /* HELO and EHLO reset the transaction (RFC 5321 4.1.4) */

    ngx_mail_plus_smtp_reset(ctx);

    ngx_memcpy(ctx->helo, arg->data, arg->len);
    ctx->helo_len = arg->len;
    ctx->esmtp = esmtp;

    /* the name was checked above: printable ASCII only */

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: %s \"%V\" accepted, reply 250",
                   esmtp ? "EHLO" : "HELO", arg);

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);
    sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);

    out = ctx->out;

    out->last = ngx_sprintf(out->last, "250%c%V Hello %*s [%V], "
                            "pleased to meet you" CRLF,
                            esmtp ? '-' : ' ', &cscf->server_name,
                            arg->len, arg->data, &c->addr_text);

    if (!esmtp) {
        return;
    }

    out->last = ngx_sprintf(out->last,
                            "250-SIZE %O" CRLF
                            "250-8BITMIME" CRLF
                            "250-PIPELINING" CRLF
                            "250-ENHANCEDSTATUSCODES" CRLF
                            "250-DSN" CRLF
                            "250-CHUNKING" CRLF,
                            sscf->max_message_size);

#if (NGX_MAIL_SSL)

    sslcf = ngx_mail_get_module_srv_conf(s, ngx_mail_ssl_module);

    if (c->ssl == NULL && sslcf->starttls != NGX_MAIL_STARTTLS_OFF) {
        out->last = ngx_cpymem(out->last, "250-STARTTLS" CRLF,
                               sizeof("250-STARTTLS" CRLF) - 1);
    }

#endif

    mpcf = ngx_mail_get_module_main_conf(s, ngx_mail_plus_module);

    if (mpcf->pools.nelts && !ctx->authenticated
        && (c->ssl || sscf->auth_plaintext))
    {
        out->last = ngx_cpymem(out->last, "250-AUTH PLAIN LOGIN" CRLF,
                               sizeof("250-AUTH PLAIN LOGIN" CRLF) - 1);
    }

    out->last = ngx_cpymem(out->last, "250-HELP" CRLF "250 SMTPUTF8" CRLF,
                           sizeof("250-HELP" CRLF "250 SMTPUTF8" CRLF) - 1);
}


static void
ngx_mail_plus_smtp_mail(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg)
{
    ngx_int_t                       rc;
    ngx_mail_plus_smtp_path_t       path;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;

    if (ctx->helo_len == 0) {
        ngx_mail_plus_smtp_error(s, ctx,
                                 "503 5.5.1 Error: send HELO/EHLO first");
        return;
    }

    if (ctx->in_tx) {
        ngx_mail_plus_smtp_error(s, ctx,
                                 "503 5.5.1 Error: nested MAIL command");
        return;
    }

    rc = ngx_mail_plus_smtp_parse_path(arg, 0, &path);

    if (rc == NGX_ERROR) {
        ngx_mail_plus_smtp_error(s, ctx,
                                 "501 5.5.4 Syntax: MAIL FROM:<address>");
        return;
    }

    if (rc == NGX_MAIL_PLUS_SMTP_BAD_PARAM || (path.body && !ctx->esmtp)) {
        ngx_mail_plus_smtp_error(s, ctx,
                                 "555 5.5.4 Error: unsupported parameter");
        return;
    }

    if (path.utf8 && !path.smtputf8) {
        ngx_mail_plus_smtp_error(s, ctx, "553 5.6.7 Error: non-ASCII address "
                                 "without SMTPUTF8");
        return;
    }

    sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);

    if (path.size > sscf->max_message_size) {
        ngx_mail_plus_smtp_error(s, ctx, "552 5.3.4 Error: message size "
                                 "exceeds fixed limit");
        return;
    }

    ctx->tx = ngx_create_pool(1024, c->log);
    if (ctx->tx == NULL) {
        ngx_mail_plus_smtp_reply(ctx, "451 4.3.0 Error: internal error");
        return;
    }

    ctx->rcpts = ngx_array_create(ctx->tx, 4, sizeof(ngx_str_t));
    ctx->dsn = ngx_array_create(ctx->tx, 4, sizeof(ngx_str_t));

    ctx->from.data = ngx_pstrdup(ctx->tx, &path.addr);
    ctx->ret.data = ngx_pstrdup(ctx->tx, &path.ret);
    ctx->envid.data = ngx_pstrdup(ctx->tx, &path.envid);

    if (ctx->rcpts == NULL || ctx->dsn == NULL
        || (ctx->from.data == NULL && path.addr.len)
        || ctx->ret.data == NULL || ctx->envid.data == NULL)
    {
        ngx_mail_plus_smtp_reset(ctx);
        ngx_mail_plus_smtp_reply(ctx, "451 4.3.0 Error: internal error");
        return;
    }

    ctx->from.len = path.addr.len;
    ctx->ret.len = path.ret.len;
    ctx->envid.len = path.envid.len;
    ctx->body = path.body;
    ctx->smtputf8 = path.smtputf8;
    ctx->in_tx = 1;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: MAIL FROM:<%V> accepted, size %O, body %ui",
                   &ctx->from, path.size, ctx->body);

    ngx_mail_plus_smtp_reply(ctx, "250 2.1.0 Ok");
}


static void
ngx_mail_plus_smtp_rcpt(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg)
{
    ngx_int_t                       rc;
    ngx_mail_plus_smtp_path_t       path;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;
    u_char                          text[NGX_MAIL_PLUS_SMTP_MAX_PATH + 96];

    if (!ctx->in_tx) {
        ngx_mail_plus_smtp_error(s, ctx, "503 5.5.1 Error: need MAIL command");
        return;
    }

    ctx->rcpt_tries++;

    rc = ngx_mail_plus_smtp_parse_path(arg, 1, &path);

    if (rc == NGX_ERROR) {
        ngx_mail_plus_smtp_error(s, ctx, "501 5.5.4 Syntax: RCPT TO:<address>");
        return;
    }

    if (rc == NGX_MAIL_PLUS_SMTP_BAD_PARAM) {
        ngx_mail_plus_smtp_error(s, ctx,
                                 "555 5.5.4 Error: unsupported parameter");
        return;
    }

    if (path.utf8 && !ctx->smtputf8) {
        ngx_mail_plus_smtp_error(s, ctx, "553 5.6.7 Error: non-ASCII address "
                                 "without SMTPUTF8");
        return;
    }

    sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);

    if (ctx->rcpts->nelts >= sscf->max_recipients) {
        ngx_mail_plus_smtp_reply(ctx, "452 4.5.3 Error: too many recipients");
        return;
    }

    if (path.domain.len == 0 || ngx_mail_plus_smtp_local(sscf, &path.domain)) {

        /* a local recipient must exist; <Postmaster> always does */

        if (path.domain.len) {
            rc = ngx_mail_plus_smtp_user(s, c, ctx, &path);

            if (rc == NGX_AGAIN) {
                /* the mailbox server is asked; the answer goes on */
                return;
            }

            if (rc != NGX_OK) {
                ngx_mail_plus_smtp_rcpt_refused(s, ctx, &path.addr, rc);
                return;
            }
        }

    } else if (!ctx->authenticated && !ctx->trusted) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "relay denied to \"%V\"", &path.addr);

        (void) ngx_sprintf(text, "550 5.7.1 <%V>: Relay access denied%Z",
                           &path.addr);
        ngx_mail_plus_smtp_error(s, ctx, (char *) text);
        return;
    }

    ngx_mail_plus_smtp_rcpt_add(s, ctx, &path);
}


/*
 * NGX_ABORT: a local part that is refused; NGX_DECLINED: no such user;
 * NGX_BUSY: the mailbox server cannot tell now; NGX_ERROR
 */

static void
ngx_mail_plus_smtp_rcpt_refused(ngx_mail_session_t *s,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *addr, ngx_int_t rc)
{
    u_char  text[NGX_MAIL_PLUS_SMTP_MAX_PATH + 128];

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                   "smtp: RCPT TO:<%V> refused: %i", addr, rc);

    switch (rc) {

    case NGX_ABORT:
        (void) ngx_sprintf(text, "550 5.1.3 <%V>: Recipient address "
                           "rejected: bad local part%Z", addr);
        break;

    case NGX_DECLINED:
        (void) ngx_sprintf(text, "550 5.1.1 <%V>: Recipient address "
                           "rejected: User unknown%Z", addr);
        break;

    case NGX_BUSY:
        (void) ngx_sprintf(text, "450 4.4.3 <%V>: Recipient address "
                           "rejected: mailbox server unavailable, "
                           "try again later%Z", addr);
        break;

    default:
        ngx_mail_plus_smtp_reply(ctx, "451 4.3.0 Error: internal error");
        return;
    }

    /* each counts as an error: a client cannot make many probes */

    ngx_mail_plus_smtp_error(s, ctx, (char *) text);
}


static void
ngx_mail_plus_smtp_rcpt_add(ngx_mail_session_t *s,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_mail_plus_smtp_path_t *path)
{
    ngx_str_t  *rcpt, *dsn;

    rcpt = ngx_array_push(ctx->rcpts);
    if (rcpt == NULL) {
        ngx_mail_plus_smtp_reply(ctx, "451 4.3.0 Error: internal error");
        return;
    }

    rcpt->data = ngx_pstrdup(ctx->tx, &path->addr);
    if (rcpt->data == NULL) {
        ctx->rcpts->nelts--;
        ngx_mail_plus_smtp_reply(ctx, "451 4.3.0 Error: internal error");
        return;
    }

    rcpt->len = path->addr.len;

    /* RFC 3461: "NOTIFY=... ORCPT=...", as the queue file keeps them */

    dsn = ngx_array_push(ctx->dsn);
    if (dsn == NULL) {
        ctx->rcpts->nelts--;
        ngx_mail_plus_smtp_reply(ctx, "451 4.3.0 Error: internal error");
        return;
    }

    if (ngx_mail_plus_dsn_value(ctx->tx, path, dsn) != NGX_OK) {
        ctx->rcpts->nelts--;
        ctx->dsn->nelts--;
        ngx_mail_plus_smtp_reply(ctx, "451 4.3.0 Error: internal error");
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                   "smtp: RCPT TO:<%V> accepted, %ui recipients",
                   rcpt, ctx->rcpts->nelts);

    ngx_mail_plus_smtp_reply(ctx, "250 2.1.5 Ok");
}


/* "example.com" is that domain only, ".example.com" its subdomains */

static ngx_int_t
ngx_mail_plus_smtp_local(ngx_mail_plus_smtp_srv_conf_t *sscf,
    ngx_str_t *domain)
{
    ngx_str_t   *d;
    ngx_uint_t   i;

    if (sscf->local_domains == NULL) {
        return 0;
    }

    d = sscf->local_domains->elts;

    for (i = 0; i < sscf->local_domains->nelts; i++) {

        if (d[i].data[0] == '.') {
            if (domain->len > d[i].len
                && ngx_strncasecmp(domain->data + domain->len - d[i].len,
                                   d[i].data, d[i].len)
                   == 0)
            {
                return 1;
            }

            continue;
        }

        if (domain->len == d[i].len
            && ngx_strncasecmp(domain->data, d[i].data, d[i].len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/*
 * a local recipient is asked of the router (ngx_mail_plus_recipient(), as
 * the delivery asks it): the address, then its local part.  It exists if
 * the users file has it, or if there is no router at all; in a pool whose
 * backends know their users ("auth backend") the mailbox server is asked
 * (ngx_mail_plus_smtp_verify.c), unless "smtp_verify_recipients" is off.
 * NGX_OK, NGX_AGAIN (the probe answers), or as for rcpt_refused()
 */

static ngx_int_t
ngx_mail_plus_smtp_user(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_mail_plus_smtp_path_t *path)
{
    ngx_int_t                       rc;
    ngx_pool_t                     *pool;
    ngx_mail_plus_route_t           route;
    ngx_mail_core_srv_conf_t       *cscf;
    ngx_mail_plus_main_conf_t      *mpcf;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;

    /* "a%b@local" must not become mail for b: refused, router or not */

    if (ngx_mail_plus_recipient_local_part(&path->addr) != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "recipient \"%V\" refused: \"@\", \"%%\" or \"!\" "
                      "in the local part", &path->addr);
        return NGX_ABORT;
    }

    mpcf = ngx_mail_get_module_main_conf(s, ngx_mail_plus_module);

    if (mpcf->pools.nelts == 0) {
        return NGX_OK;
    }

    /* what the router takes lives only as long as this RCPT */

    pool = ngx_create_pool(1024, c->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_mail_plus_recipient(mpcf, &path->addr, &route, pool, c->log);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "recipient \"%V\" refused: %V",
                      &path->addr, &route.reason);
        goto done;
    }

    sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);

    if (rc != NGX_OK || route.user || !sscf->verify_recipients) {
        goto done;
    }

    /* the path is kept for the answer: the line it points to may go */

    ctx->vpath = *path;
    ctx->vpath.addr.data = ngx_pstrdup(pool, &path->addr);
    ctx->vpath.notify.data = ngx_pstrdup(pool, &path->notify);
    ctx->vpath.orcpt.data = ngx_pstrdup(pool, &path->orcpt);

    if (ctx->vpath.addr.data == NULL
        || (ctx->vpath.notify.data == NULL && path->notify.len)
        || (ctx->vpath.orcpt.data == NULL && path->orcpt.len))
    {
        rc = NGX_ERROR;
        goto done;
    }

    ctx->vpath.domain.len = 0;
    ctx->vpath.domain.data = NULL;
    ctx->vpath.param.len = 0;
    ctx->vpath.param.data = NULL;

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    rc = ngx_mail_plus_verify(&sscf->verify, &route, &cscf->server_name,
                              ngx_mail_plus_smtp_verified, s, c->log,
                              &ctx->verify);

    if (rc == NGX_AGAIN) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: RCPT TO:<%V> waits for its mailbox server",
                       &path->addr);

        ctx->vpool = pool;
        ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_rcpt_verify);
        return NGX_AGAIN;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "recipient \"%V\" refused: unknown to its mailbox "
                      "server (cached)", &path->addr);

    } else if (rc == NGX_ERROR) {
        rc = NGX_BUSY;
    }

done:

    ngx_destroy_pool(pool);

    return rc;
}


/* the mailbox server's answer about a recipient */

static void
ngx_mail_plus_smtp_verified(void *data, ngx_int_t rc)
{
    ngx_mail_session_t *s = data;

    ngx_connection_t          *c;
    ngx_mail_plus_smtp_ctx_t  *ctx;

    c = s->connection;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_smtp_module);

    ctx->verify = NULL;
    ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: RCPT TO:<%V> probe answered %i",
                   &ctx->vpath.addr, rc);

    switch (rc) {

    case NGX_OK:
        ngx_mail_plus_smtp_rcpt_add(s, ctx, &ctx->vpath);
        break;

    case NGX_DECLINED:
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "recipient \"%V\" refused: unknown to its mailbox "
                      "server", &ctx->vpath.addr);
        ngx_mail_plus_smtp_rcpt_refused(s, ctx, &ctx->vpath.addr, rc);
        break;

    default:
        ngx_mail_plus_smtp_rcpt_refused(s, ctx, &ctx->vpath.addr, NGX_BUSY);
        break;
    }

    ngx_destroy_pool(ctx->vpool);
    ctx->vpool = NULL;

    ngx_mail_plus_smtp_run(s, c);
}


static void
ngx_mail_plus_smtp_data(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg)
{
    if (!ctx->in_tx) {
        ngx_mail_plus_smtp_error(s, ctx, "503 5.5.1 Error: need MAIL command");
        return;
    }

    if (ctx->rcpts->nelts == 0) {
        ngx_mail_plus_smtp_error(s, ctx, ctx->rcpt_tries
                                 ? "554 5.5.1 Error: no valid recipients"
                                 : "503 5.5.1 Error: need RCPT command");
        return;
    }

    if (ctx->bdat_used) {
        ngx_mail_plus_smtp_error(s, ctx,
                                 "503 5.5.1 Error: DATA after BDAT");
        return;
    }

    if (arg->len) {
        ngx_mail_plus_smtp_error(s, ctx, "501 5.5.4 Syntax: DATA");
        return;
    }

    if (ngx_mail_plus_smtp_open(s, c, ctx) != NGX_OK) {
        ngx_mail_plus_smtp_reset(ctx);
        ngx_mail_plus_smtp_reply(ctx,
                                 "452 4.3.1 Insufficient system storage");
        return;
    }

    ngx_mail_plus_smtp_data_init(&ctx->data, 0);

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: DATA accepted, message %s, %ui recipients",
                   ctx->msg->id, ctx->rcpts->nelts);

    ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_data);

    c->log->action = "reading message data";

    ngx_mail_plus_smtp_reply(ctx, "354 End data with <CR><LF>.<CR><LF>");
}


static void
ngx_mail_plus_smtp_bdat(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg)
{
    off_t       size;
    ngx_uint_t  last;

    if (ngx_mail_plus_smtp_parse_bdat(arg, &size, &last) != NGX_OK) {

        /* the chunk cannot be skipped: its size is unknown */

        ngx_mail_plus_smtp_reply(ctx, "501 5.5.4 Syntax: BDAT size [LAST]");
        ctx->quit = 1;
        return;
    }

    /*
     * the line as parsed, in the form t/delivery_tls.t looks for: the
     * arguments are the parser's, not the client's bytes
     */

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp command %ui \"BDAT %O%s\": chunk accepted",
                   (ngx_uint_t) NGX_MAIL_PLUS_SMTP_BDAT, size,
                   last ? " LAST" : "");

    ctx->bdat_left = size;
    ctx->bdat_last = last;
    ctx->discard = 1;
    ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_bdat);

    c->log->action = "reading message data";

    /* a chunk is read even when it is refused (RFC 3030 2) */

    if (!ctx->in_tx) {
        ngx_str_set(&ctx->bdat_reply, "503 5.5.1 Error: need MAIL command");
        return;
    }

    if (ctx->rcpts->nelts == 0) {
        ngx_str_set(&ctx->bdat_reply, "503 5.5.1 Error: need RCPT command");
        return;
    }

    if (ctx->msg == NULL) {

        if (ctx->bdat_used) {
            /* an earlier chunk failed */
            ngx_str_set(&ctx->bdat_reply,
                        "452 4.3.1 Insufficient system storage");
            return;
        }

        ctx->bdat_used = 1;

        if (ngx_mail_plus_smtp_open(s, c, ctx) != NGX_OK) {
            ngx_str_set(&ctx->bdat_reply,
                        "452 4.3.1 Insufficient system storage");
            return;
        }

        ngx_mail_plus_smtp_data_init(&ctx->data, 1);
    }

    ctx->discard = 0;
}


/* the temporary file of the spool, with the Received field */

static ngx_int_t
ngx_mail_plus_smtp_open(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    u_char                           with[sizeof("UTF8SMTPSA")];
    ngx_mail_core_srv_conf_t        *cscf;
    ngx_mail_plus_received_t         rv;
    ngx_mail_plus_queue_envelope_t   env;
    ngx_mail_plus_smtp_main_conf_t  *smcf;

    smcf = ngx_mail_get_module_main_conf(s, ngx_mail_plus_smtp_module);
    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    ctx->wbuf = ngx_pnalloc(ctx->tx, NGX_MAIL_PLUS_SMTP_WRITE_SIZE);
    if (ctx->wbuf == NULL) {
        return NGX_ERROR;
    }

    ctx->wpos = ctx->wbuf;
    ctx->wend = ctx->wbuf + NGX_MAIL_PLUS_SMTP_WRITE_SIZE;

    env.sender = ctx->from;
    env.recipients = ctx->rcpts;
    env.client = c->addr_text;
    env.helo.data = ctx->helo;
    env.helo.len = ctx->helo_len;
    env.login = ctx->login;
    env.body = ctx->body;
    env.ret = ctx->ret;
    env.envid = ctx->envid;
    env.dsn = ctx->dsn;
    env.smtputf8 = ctx->smtputf8;

    ctx->msg = ngx_mail_plus_queue_open(smcf->queue, &env, c->log);
    if (ctx->msg == NULL) {
        return NGX_ERROR;
    }

    ctx->oversize = 0;
    ctx->spool_error = 0;

    /* the protocol names of RFC 3848 */

    (void) ngx_sprintf(with, "%s%s%s%Z",
                       ctx->smtputf8 ? "UTF8SMTP" : (ctx->esmtp ? "ESMTP"
                                                                : "SMTP"),
                       c->ssl ? "S" : "", ctx->authenticated ? "A" : "");

    rv.helo.data = ctx->helo;
    rv.helo.len = ctx->helo_len;
    rv.addr = c->addr_text;
    rv.ipv6 = (c->sockaddr->sa_family == AF_INET6);
    rv.server_name = cscf->server_name;
    rv.with = (char *) with;
    rv.id = ctx->msg->id;
    rv.rcpt = (ctx->rcpts->nelts == 1) ? ctx->rcpts->elts : NULL;

    ctx->wpos = ngx_mail_plus_received(ctx->wpos, &rv);

    return NGX_OK;
}


/* content of DATA or of a BDAT chunk; NGX_AGAIN when input is needed */

static ngx_int_t
ngx_mail_plus_smtp_content(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    u_char                         *last, *pos;
    ngx_int_t                       rc;
    ngx_buf_t                      *b;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;

    b = s->buffer;

    if (ctx->state == ngx_mail_plus_st_bdat) {

        if (ctx->bdat_left == 0) {
            goto chunk;
        }

        if (b->pos == b->last) {
            return NGX_AGAIN;
        }

        last = b->pos + ngx_min(ctx->bdat_left, b->last - b->pos);

        if (ctx->discard) {
            ctx->bdat_left -= last - b->pos;
            b->pos = last;
            return NGX_OK;
        }

    } else {

        if (b->pos == b->last) {
            return NGX_AGAIN;
        }

        last = b->last;
    }

    sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);

    pos = b->pos;

    rc = ngx_mail_plus_smtp_read_data(&ctx->data, &b->pos, last, &ctx->wpos,
                                      ctx->wend);

    if (ctx->state == ngx_mail_plus_st_bdat) {
        ctx->bdat_left -= b->pos - pos;
    }

    if (ctx->data.size > sscf->max_message_size) {
        ctx->oversize = 1;
    }

    switch (rc) {

    case NGX_MAIL_PLUS_SMTP_OUT_FULL:
        ngx_mail_plus_smtp_write_out(ctx);
        return NGX_OK;

    case NGX_MAIL_PLUS_SMTP_HEADERS:
        ngx_mail_plus_smtp_add_fields(s, ctx);
        return NGX_OK;

    case NGX_OK:
        if (ctx->data.headers) {
            ngx_mail_plus_smtp_add_fields(s, ctx);
        }

        ngx_mail_plus_smtp_end(s, c, ctx);
        return NGX_OK;
    }

    /* NGX_AGAIN */

    if (ctx->state == ngx_mail_plus_st_data || ctx->bdat_left) {
        return NGX_AGAIN;
    }

chunk:

    /* the end of a BDAT chunk */

    if (ctx->discard) {
        ctx->discard = 0;
        ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);
        ngx_mail_plus_smtp_error(s, ctx, (char *) ctx->bdat_reply.data);

        if (ctx->bdat_reply.data[0] == '4') {
            ngx_mail_plus_smtp_reset(ctx);
        }

        return NGX_OK;
    }

    if (ctx->oversize) {
        ngx_mail_plus_smtp_reset(ctx);
        ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);
        ngx_mail_plus_smtp_reply(ctx, "552 5.3.4 Error: message size exceeds "
                                 "fixed limit");
        return NGX_OK;
    }

    if (ctx->bdat_last) {

        if (ctx->wend - ctx->wpos < 8) {
            ngx_mail_plus_smtp_write_out(ctx);
        }

        ctx->wpos = ngx_mail_plus_smtp_data_finish(&ctx->data, ctx->wpos);

        if (ctx->data.headers) {
            ngx_mail_plus_smtp_add_fields(s, ctx);
        }

        ngx_mail_plus_smtp_end(s, c, ctx);
        return NGX_OK;
    }

    ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);

    ctx->out->last = ngx_sprintf(ctx->out->last,
                                 "250 2.0.0 Ok: %O octets received" CRLF,
                                 ctx->data.size);
    return NGX_OK;
}


static void
ngx_mail_plus_smtp_write_out(ngx_mail_plus_smtp_ctx_t *ctx)
{
    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "smtp: %uz bytes to the spool, %O in all, kept: %ui",
                   (size_t) (ctx->wpos - ctx->wbuf), ctx->data.size,
                   (ngx_uint_t) (ctx->msg && !ctx->oversize
                                 && !ctx->spool_error));

    if (ctx->msg && !ctx->oversize && !ctx->spool_error
        && ngx_mail_plus_queue_write(ctx->msg, ctx->wbuf,
                                     ctx->wpos - ctx->wbuf)
           != NGX_OK)
    {
        ctx->spool_error = 1;
    }

    ctx->wpos = ctx->wbuf;
}


/* an authenticated submission gets Message-ID and Date (RFC 6409 8) */

static void
ngx_mail_plus_smtp_add_fields(ngx_mail_session_t *s,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    ngx_mail_core_srv_conf_t  *cscf;

    ctx->data.headers = 0;

    if (!ctx->authenticated
        || (ctx->data.has_message_id && ctx->data.has_date))
    {
        return;
    }

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    if ((size_t) (ctx->wend - ctx->wpos)
        < NGX_MAIL_PLUS_FIELDS_LEN + cscf->server_name.len)
    {
        ngx_mail_plus_smtp_write_out(ctx);
    }

    ctx->wpos = ngx_mail_plus_submission_fields(ctx->wpos, &ctx->data,
                                                ctx->msg->id,
                                                &cscf->server_name);
}


/* the whole message is read: it is committed, or refused */

static void
ngx_mail_plus_smtp_end(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    ngx_mail_plus_queue_msg_t  *m;

    c->log->action = "in smtp store-and-forward state";

    ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);

    ngx_mail_plus_smtp_write_out(ctx);

    if (ctx->oversize) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "message of %O octets refused, too large",
                      ctx->data.size);
        ngx_mail_plus_smtp_reset(ctx);
        ngx_mail_plus_smtp_reply(ctx, "552 5.3.4 Error: message size exceeds "
                                 "fixed limit");
        return;
    }

    m = ctx->msg;

    if (!ctx->spool_error && ctx->data.eight_bit
        && ctx->body != NGX_MAIL_PLUS_BODY_8BITMIME)
    {
        /* RFC 6152 3: 8-bit data needs BODY=8BITMIME; it is kept as such */

        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "8-bit data without BODY=8BITMIME, stored as 8BITMIME");

        if (ngx_mail_plus_queue_set_body(m, NGX_MAIL_PLUS_BODY_8BITMIME)
            != NGX_OK)
        {
            ctx->spool_error = 1;
        }
    }

    if (ctx->spool_error) {
        ngx_mail_plus_smtp_reset(ctx);
        ngx_mail_plus_smtp_reply(ctx,
                                 "452 4.3.1 Insufficient system storage");
        return;
    }

    m->handler = ngx_mail_plus_smtp_committed;
    m->data = s;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: message %s of %O bytes read, commit posted",
                   m->id, ctx->data.size);

    ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_commit);

    (void) ngx_mail_plus_queue_commit(m);
}


static void
ngx_mail_plus_smtp_committed(ngx_mail_plus_queue_msg_t *m)
{
    ngx_mail_session_t        *s;
    ngx_connection_t          *c;
    ngx_mail_plus_stats_t     *stats;
    ngx_mail_plus_smtp_ctx_t  *ctx;

    s = m->data;
    c = s->connection;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_smtp_module);

    ctx->msg = NULL;
    ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: commit of %s done, error %d", m->id, m->err);

    if (m->err == NGX_EAGAIN) {

        /* the queue's thread pool could not take the commit */

        ngx_log_error(NGX_LOG_WARN, c->log, 0,
                      "message not queued, the queue is busy");
        ngx_mail_plus_smtp_reply(ctx, "451 4.3.0 Error: queue busy, "
                                 "try again later");

    } else if (m->err) {
        ngx_mail_plus_smtp_reply(ctx,
                                 "452 4.3.1 Insufficient system storage");

    } else {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "queued %s: from=<%V>, nrcpt=%ui, size=%O, "
                      "client=%V, login=\"%V\"",
                      m->id, &ctx->from, ctx->rcpts->nelts,
                      ctx->data.size, &c->addr_text, &ctx->login);

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: message committed as %s, reply 250", m->id);

        ctx->out->last = ngx_sprintf(ctx->out->last,
                                     "250 2.0.0 Ok: queued as %s" CRLF,
                                     m->id);
        ctx->junk = 0;
        ctx->queued++;

        stats = ngx_mail_plus_zone_stats();

        if (stats) {
            (void) ngx_atomic_fetch_add(&stats->queued, 1);
        }
    }

    ngx_mail_plus_smtp_reset(ctx);

    ngx_mail_plus_smtp_run(s, c);
}


/* the end of a transaction: what it took is freed */

static void
ngx_mail_plus_smtp_reset(ngx_mail_plus_smtp_ctx_t *ctx)
{
    if (ctx->msg) {
        ngx_mail_plus_queue_abort(ctx->msg);
        ctx->msg = NULL;
    }

    if (ctx->tx) {
        ngx_destroy_pool(ctx->tx);
        ctx->tx = NULL;
    }

    ctx->from.len = 0;
    ctx->rcpts = NULL;
    ctx->body = NGX_MAIL_PLUS_BODY_NONE;
    ctx->rcpt_tries = 0;
    ctx->in_tx = 0;
    ctx->smtputf8 = 0;
    ctx->bdat_used = 0;
    ctx->oversize = 0;
    ctx->spool_error = 0;
    ctx->wbuf = NULL;
    ctx->wpos = NULL;
    ctx->wend = NULL;
}


static void
ngx_mail_plus_smtp_auth(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg)
{
    ngx_str_t                       mech, initial;
    ngx_mail_plus_main_conf_t      *mpcf;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;

    mpcf = ngx_mail_get_module_main_conf(s, ngx_mail_plus_module);
    sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);

    if (!ctx->esmtp) {
        ngx_mail_plus_smtp_error(s, ctx, "503 5.5.1 Error: send EHLO first");
        return;
    }

    if (mpcf->pools.nelts == 0) {
        ngx_mail_plus_smtp_error(s, ctx, "503 5.5.1 Error: authentication "
                                 "not enabled");
        return;
    }

    if (ctx->authenticated) {
        ngx_mail_plus_smtp_error(s, ctx, "503 5.5.1 Error: already "
                                 "authenticated");
        return;
    }

    if (ctx->in_tx) {
        ngx_mail_plus_smtp_error(s, ctx, "503 5.5.1 Error: MAIL transaction "
                                 "in progress");
        return;
    }

    if (c->ssl == NULL && !sscf->auth_plaintext) {
        ngx_mail_plus_smtp_error(s, ctx, "538 5.7.11 Encryption required for "
                                 "requested authentication mechanism");
        return;
    }

    if (ngx_mail_plus_smtp_parse_auth(arg, &mech, &initial) != NGX_OK) {
        ngx_mail_plus_smtp_error(s, ctx, "501 5.5.4 Syntax: AUTH mechanism");
        return;
    }

    s->args.nelts = 0;
    s->login.len = 0;
    s->passwd.len = 0;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: AUTH, mechanism of %uz bytes, initial response: %ui",
                   mech.len, (ngx_uint_t) (initial.len != 0));

    if (mech.len == 5 && ngx_strncasecmp(mech.data, (u_char *) "PLAIN", 5) == 0)
    {
        if (initial.len == 0) {
            ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_auth_plain);
            ngx_mail_plus_smtp_reply(ctx, "334 ");
            return;
        }

        ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_auth_plain);
        ngx_mail_plus_smtp_auth_line(s, c, ctx, &initial);
        return;
    }

    if (mech.len == 5 && ngx_strncasecmp(mech.data, (u_char *) "LOGIN", 5) == 0)
    {
        if (initial.len == 0) {
            ngx_mail_plus_smtp_set_state(ctx,
                                         ngx_mail_plus_st_auth_login_username);
            ngx_mail_plus_smtp_reply(ctx, "334 VXNlcm5hbWU6");
            return;
        }

        ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_auth_login_username);
        ngx_mail_plus_smtp_auth_line(s, c, ctx, &initial);
        return;
    }

    ngx_mail_plus_smtp_error(s, ctx, "504 5.5.4 Error: unrecognized "
                             "authentication type");
}


/* a SASL response line */

static void
ngx_mail_plus_smtp_auth_line(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *line)
{
    u_char     *p;
    ngx_int_t   rc;
    ngx_str_t   login;

    if (line->len == 1 && line->data[0] == '*') {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: AUTH aborted by the client");
        ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);
        ngx_mail_plus_smtp_error(s, ctx, "501 5.7.0 Authentication aborted");
        return;
    }

    /* decoded in place, then copied: the line buffer is read again */

    switch (ctx->state) {

    case ngx_mail_plus_st_auth_plain:
        rc = ngx_mail_plus_sasl_plain(line, &login, &s->passwd);
        break;

    case ngx_mail_plus_st_auth_login_username:
        rc = ngx_mail_plus_sasl_login(line, &login);
        break;

    default: /* ngx_mail_plus_st_auth_login_password */
        ngx_str_null(&login);
        rc = ngx_mail_plus_sasl_login(line, &s->passwd);
        break;
    }

    if (rc == NGX_OK && login.data) {
        s->login.len = login.len;
        s->login.data = ngx_pstrdup(c->pool, &login);

        if (s->login.data == NULL) {
            rc = NGX_ERROR;
        }
    }

    if (rc == NGX_OK && ctx->state == ngx_mail_plus_st_auth_login_username) {
        ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_auth_login_password);
        ngx_mail_plus_smtp_reply(ctx, "334 UGFzc3dvcmQ6");
        return;
    }

    if (rc != NGX_OK) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: AUTH response refused: %i", rc);

        ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);
        ngx_str_null(&s->login);

        if (rc == NGX_ERROR) {
            ngx_mail_plus_smtp_reply(ctx, "454 4.7.0 Temporary "
                                     "authentication failure");
            return;
        }

        if (rc == NGX_ABORT) {
            ngx_mail_plus_smtp_error(s, ctx, "535 5.7.8 Authorization "
                                     "identity not allowed");
            return;
        }

        ngx_mail_plus_smtp_error(s, ctx, "501 5.5.2 Error: invalid "
                                 "authentication data");
        return;
    }

    /* the login goes to the envelope and the log: no control characters */

    for (p = s->login.data; p < s->login.data + s->login.len; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);
            ngx_str_null(&s->login);
            ngx_mail_plus_smtp_error(s, ctx, "501 5.5.2 Error: invalid "
                                     "authentication data");
            return;
        }
    }

    ngx_mail_plus_smtp_auth_start(s, c, ctx);
}


/* the router checks the password, as for an HTTP submission */

static void
ngx_mail_plus_smtp_auth_start(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    ngx_int_t                   rc;
    ngx_mail_plus_main_conf_t  *mpcf;

    mpcf = ngx_mail_get_module_main_conf(s, ngx_mail_plus_module);

    ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_auth_check);

    ctx->check = ngx_mail_plus_check_create(mpcf, c->log);
    if (ctx->check == NULL) {
        goto failed;
    }

    if (ngx_mail_plus_check_set_submission(ctx->check, &s->login,
                                           &s->passwd, &c->addr_text)
        != NGX_OK)
    {
        goto failed;
    }

    ctx->check->handler = ngx_mail_plus_smtp_auth_checked;
    ctx->check->data = s;

    /* the session ends in nginx: no backend would check the password */

    ctx->check->router_only = 1;

    rc = ngx_mail_plus_check_start(ctx->check);

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: AUTH credentials to the router: %i", rc);

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc == NGX_OK) {
        ngx_mail_plus_smtp_auth_done(s, c, ctx);
        return;
    }

failed:

    if (ctx->check) {
        ngx_mail_plus_check_free(ctx->check);
        ctx->check = NULL;
    }

    ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);
    ngx_mail_plus_smtp_reply(ctx, "454 4.7.0 Temporary authentication "
                             "failure");
}


static void
ngx_mail_plus_smtp_auth_checked(ngx_mail_plus_check_t *check)
{
    ngx_connection_t          *c;
    ngx_mail_session_t        *s;
    ngx_mail_plus_smtp_ctx_t  *ctx;

    s = check->data;
    c = s->connection;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_smtp_module);

    ngx_mail_plus_smtp_auth_done(s, c, ctx);

    ngx_mail_plus_smtp_run(s, c);
}


static void
ngx_mail_plus_smtp_auth_done(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    time_t                  delay;
    ngx_mail_plus_route_t  *route;

    route = &ctx->check->route;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: AUTH checked, route status %ui", route->status);

    ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);

    if (route->status == NGX_MAIL_PLUS_ALLOW
        && route->pool->auth == NGX_MAIL_PLUS_AUTH_ROUTER)
    {
        ctx->login.data = ngx_pstrdup(c->pool, &s->login);

        if (ctx->login.data) {
            ctx->login.len = s->login.len;
            ctx->authenticated = 1;

            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "client authenticated as \"%V\"", &s->login);

            ngx_mail_plus_smtp_reply(ctx,
                                     "235 2.7.0 Authentication successful");
        }

        ngx_mail_plus_check_free(ctx->check);
        ctx->check = NULL;
        return;
    }

    /*
     * a pool whose backends check passwords cannot be asked here: the
     * session ends in nginx
     */

    if (route->status == NGX_MAIL_PLUS_TEMPFAIL) {
        ngx_str_set(&ctx->auth_reply,
                    "454 4.7.0 Temporary authentication failure");

    } else {
        ngx_str_set(&ctx->auth_reply,
                    "535 5.7.8 Error: authentication failed");
    }

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "client login \"%V\" failed: %V", &s->login,
                  route->reason.len ? &route->reason : &ctx->auth_reply);

    /* the router's delay: it grows with the failures it counted */

    delay = (route->status == NGX_MAIL_PLUS_DENY) ? route->delay : 0;

    ngx_mail_plus_check_free(ctx->check);
    ctx->check = NULL;

    s->login.len = 0;

    if (delay == 0) {
        ngx_mail_plus_smtp_error(s, ctx, (char *) ctx->auth_reply.data);
        return;
    }

    /* failures are answered late, as the auth_http endpoint does */

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: AUTH failed, reply after %T s", delay);

    ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_auth_delay);

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    ngx_add_timer(c->read, (ngx_msec_t) delay * 1000);
}


static void
ngx_mail_plus_smtp_set_state(ngx_mail_plus_smtp_ctx_t *ctx,
    ngx_mail_plus_smtp_state_e state)
{
    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "smtp: state \"%s\" entered, was \"%s\"",
                   ngx_mail_plus_smtp_states[state],
                   ngx_mail_plus_smtp_states[ctx->state]);

    ctx->state = state;
}


/* the replies are ours: the code is logged, never the address in them */

static void
ngx_mail_plus_smtp_reply(ngx_mail_plus_smtp_ctx_t *ctx, char *text)
{
    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "smtp: reply %*s", (size_t) 3, text);

    ctx->out->last = ngx_sprintf(ctx->out->last, "%s" CRLF, text);
}


/* a reply that counts as a client error; too many of them end the session */

static void
ngx_mail_plus_smtp_error(ngx_mail_session_t *s, ngx_mail_plus_smtp_ctx_t *ctx,
    char *text)
{
    ngx_mail_plus_smtp_reply(ctx, text);
    ngx_mail_plus_smtp_count_error(s, ctx);
}


static void
ngx_mail_plus_smtp_count_error(ngx_mail_session_t *s,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    ngx_mail_core_srv_conf_t       *cscf;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;

    if (ctx->quit) {
        return;
    }

    sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);

    if (++ctx->errors < sscf->max_errors) {
        return;
    }

    ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                  "client made too many errors");

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    ctx->out->last = ngx_sprintf(ctx->out->last,
                                 "421 4.7.0 %V Error: too many errors" CRLF,
                                 &cscf->server_name);
    ctx->quit = 1;
}
