
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
 * The message of the SMTP session's transaction: DATA and BDAT.  The
 * content is streamed to a temporary file of the spool, opened with its
 * Received field; at the end of the header, an authenticated submission
 * gets the Message-ID and Date it lacks.  At the end of the data the
 * message is committed in a thread, whose completion replies
 * "250 2.0.0 Ok: queued as ID" and resumes the session.
 */


#define NGX_MAIL_PLUS_SMTP_WRITE_SIZE   32768  /* content to the file */


static ngx_int_t ngx_mail_plus_smtp_open(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx);
static void ngx_mail_plus_smtp_write_out(ngx_mail_plus_smtp_ctx_t *ctx);
static void ngx_mail_plus_smtp_add_fields(ngx_mail_session_t *s,
    ngx_mail_plus_smtp_ctx_t *ctx);
static void ngx_mail_plus_smtp_end(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx);
static void ngx_mail_plus_smtp_committed(ngx_mail_plus_queue_msg_t *m);


void
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


void
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

ngx_int_t
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
