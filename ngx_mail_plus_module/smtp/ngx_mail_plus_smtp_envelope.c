
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
 * The envelope of the SMTP session's transaction: MAIL FROM and RCPT TO.
 * Each recipient is checked: a domain not in "smtp_local_domains" is
 * relayed only for an authenticated or trusted client; a local one is
 * asked of the router (and of its directories, whose answer resumes the
 * session), and maybe of its mailbox server (the recipient probe,
 * ngx_mail_plus_smtp_verify.c), whose answer resumes the session.
 */


static ngx_int_t ngx_mail_plus_smtp_local(ngx_mail_plus_smtp_srv_conf_t *sscf,
    ngx_str_t *domain);
static ngx_int_t ngx_mail_plus_smtp_user(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx,
    ngx_mail_plus_smtp_path_t *path);
static ngx_int_t ngx_mail_plus_smtp_user_check(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx,
    ngx_mail_plus_smtp_path_t *path, ngx_pool_t *pool,
    ngx_mail_plus_route_t *route);
static void ngx_mail_plus_smtp_user_checked(ngx_mail_plus_check_t *check);
static ngx_int_t ngx_mail_plus_smtp_user_route(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx,
    ngx_mail_plus_smtp_path_t *path, ngx_int_t rc,
    ngx_mail_plus_route_t *route, ngx_pool_t *pool);
static ngx_int_t ngx_mail_plus_smtp_keep_path(ngx_mail_plus_smtp_ctx_t *ctx,
    ngx_mail_plus_smtp_path_t *path, ngx_pool_t *pool);
static void ngx_mail_plus_smtp_verified(void *data, ngx_int_t rc);
static void ngx_mail_plus_smtp_rcpt_refused(ngx_mail_session_t *s,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *addr, ngx_int_t rc);
static void ngx_mail_plus_smtp_rcpt_add(ngx_mail_session_t *s,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_mail_plus_smtp_path_t *path);


void
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


void
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
 * NGX_BUSY: the mailbox server cannot tell now; NGX_DONE: nor the
 * directories; NGX_ERROR
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

    case NGX_DONE:
        (void) ngx_sprintf(text, "451 4.3.0 <%V>: Recipient address "
                           "rejected: user directory unavailable, "
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
 * the users file has it, or a directory, or if there is no router at all;
 * in a pool whose backends know their users ("auth backend") the mailbox
 * server is asked (ngx_mail_plus_smtp_verify.c), unless
 * "smtp_verify_recipients" is off.  NGX_OK, NGX_AGAIN (a directory or the
 * probe answers), or as for rcpt_refused()
 */

static ngx_int_t
ngx_mail_plus_smtp_user(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_mail_plus_smtp_path_t *path)
{
    ngx_int_t                   rc;
    ngx_pool_t                 *pool;
    ngx_mail_plus_route_t       route;
    ngx_mail_plus_main_conf_t  *mpcf;

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

    if (mpcf->directories) {
        rc = ngx_mail_plus_smtp_user_check(s, c, ctx, path, pool, &route);

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

    } else {
        rc = ngx_mail_plus_recipient(mpcf, &path->addr, &route, pool, c->log);
    }

    rc = ngx_mail_plus_smtp_user_route(s, c, ctx, path, rc, &route, pool);

    if (ctx->rcheck) {
        ngx_mail_plus_check_free(ctx->rcheck);
        ctx->rcheck = NULL;
    }

    return rc;
}


/*
 * the router asks its directories when its users file does not know the
 * recipient: NGX_AGAIN (the path kept, the answer resumes the session),
 * or as ngx_mail_plus_recipient(), with NGX_BUSY when no directory could
 * answer; ctx->rcheck holds what the route points to
 */

static ngx_int_t
ngx_mail_plus_smtp_user_check(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_mail_plus_smtp_path_t *path,
    ngx_pool_t *pool, ngx_mail_plus_route_t *route)
{
    ngx_int_t                   rc;
    ngx_mail_plus_check_t      *check;
    ngx_mail_plus_main_conf_t  *mpcf;

    mpcf = ngx_mail_get_module_main_conf(s, ngx_mail_plus_module);

    check = ngx_mail_plus_check_create(mpcf, c->log);
    if (check == NULL) {
        return NGX_ERROR;
    }

    ctx->rcheck = check;

    if (ngx_mail_plus_check_set_recipient(check, &path->addr) != NGX_OK) {
        return NGX_ERROR;
    }

    check->handler = ngx_mail_plus_smtp_user_checked;
    check->data = s;

    rc = ngx_mail_plus_check_start(check);

    if (rc == NGX_AGAIN) {
        if (ngx_mail_plus_smtp_keep_path(ctx, path, pool) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: RCPT TO:<%V> waits for a directory",
                       &path->addr);

        ctx->vpool = pool;
        ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_rcpt_verify);
        return NGX_AGAIN;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    *route = check->route;

    return check->rc;
}


/* the directories answered about the recipient */

static void
ngx_mail_plus_smtp_user_checked(ngx_mail_plus_check_t *check)
{
    ngx_mail_session_t *s = check->data;

    ngx_int_t                  rc;
    ngx_pool_t                *pool;
    ngx_connection_t          *c;
    ngx_mail_plus_route_t      route;
    ngx_mail_plus_smtp_ctx_t  *ctx;

    c = s->connection;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_smtp_module);

    ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: RCPT TO:<%V> directory answered %i",
                   &ctx->vpath.addr, check->rc);

    pool = ctx->vpool;
    ctx->vpool = NULL;

    route = check->route;

    rc = ngx_mail_plus_smtp_user_route(s, c, ctx, &ctx->vpath, check->rc,
                                       &route, pool);

    if (rc != NGX_AGAIN) {
        if (rc == NGX_OK) {
            ngx_mail_plus_smtp_rcpt_add(s, ctx, &ctx->vpath);

        } else {
            ngx_mail_plus_smtp_rcpt_refused(s, ctx, &ctx->vpath.addr, rc);
        }
    }

    /* the probe, if one was started, copied what it needs of the route */

    ngx_mail_plus_check_free(ctx->rcheck);
    ctx->rcheck = NULL;

    if (rc != NGX_AGAIN) {
        ngx_destroy_pool(pool);
    }

    ngx_mail_plus_smtp_run(s, c);
}


/*
 * the router's answer about a recipient (rc as ngx_mail_plus_recipient()
 * gives it, NGX_BUSY when no directory could answer), and maybe the
 * probe of its mailbox server: NGX_OK, NGX_AGAIN (the probe answers; it
 * keeps "pool"), or as rcpt_refused(); "pool" is destroyed otherwise,
 * unless the path is the kept one (ctx->vpath), whose caller destroys it
 */

static ngx_int_t
ngx_mail_plus_smtp_user_route(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_mail_plus_smtp_path_t *path,
    ngx_int_t rc, ngx_mail_plus_route_t *route, ngx_pool_t *pool)
{
    ngx_mail_core_srv_conf_t       *cscf;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;

    if (rc == NGX_BUSY) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "recipient \"%V\" not checked: %V",
                      &path->addr, &route->reason);
        rc = NGX_DONE;
        goto done;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "recipient \"%V\" refused: %V",
                      &path->addr, &route->reason);
        goto done;
    }

    sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);

    if (rc != NGX_OK || route->user || !sscf->verify_recipients) {
        goto done;
    }

    /* the path is kept for the answer: the line it points to may go */

    if (path != &ctx->vpath
        && ngx_mail_plus_smtp_keep_path(ctx, path, pool) != NGX_OK)
    {
        rc = NGX_ERROR;
        goto done;
    }

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    rc = ngx_mail_plus_verify(&sscf->verify, route, &cscf->server_name,
                              ngx_mail_plus_smtp_verified, s, c->log,
                              &ctx->verify);

    if (rc == NGX_AGAIN) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: RCPT TO:<%V> waits for its mailbox server",
                       &ctx->vpath.addr);

        ctx->vpool = pool;
        ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_rcpt_verify);
        return NGX_AGAIN;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "recipient \"%V\" refused: unknown to its mailbox "
                      "server (cached)", &ctx->vpath.addr);

    } else if (rc == NGX_ERROR) {
        rc = NGX_BUSY;
    }

done:

    /* the kept path's pool is its caller's, which still uses the path */

    if (path != &ctx->vpath) {
        ngx_destroy_pool(pool);
    }

    return rc;
}


/* the path kept in "pool" for an answer that comes later */

static ngx_int_t
ngx_mail_plus_smtp_keep_path(ngx_mail_plus_smtp_ctx_t *ctx,
    ngx_mail_plus_smtp_path_t *path, ngx_pool_t *pool)
{
    ctx->vpath = *path;
    ctx->vpath.addr.data = ngx_pstrdup(pool, &path->addr);
    ctx->vpath.notify.data = ngx_pstrdup(pool, &path->notify);
    ctx->vpath.orcpt.data = ngx_pstrdup(pool, &path->orcpt);

    if (ctx->vpath.addr.data == NULL
        || (ctx->vpath.notify.data == NULL && path->notify.len)
        || (ctx->vpath.orcpt.data == NULL && path->orcpt.len))
    {
        return NGX_ERROR;
    }

    ctx->vpath.domain.len = 0;
    ctx->vpath.domain.data = NULL;
    ctx->vpath.param.len = 0;
    ctx->vpath.param.data = NULL;

    return NGX_OK;
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
