
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_router.h"


/*
 * A login check: the router's answer, the throttles of the shared zone
 * and, where the pool checks passwords, the password check.  Crypt hashes
 * cost milliseconds each by design, so they are checked in the router's
 * thread pool and the caller's handler runs when the thread is done.  A
 * check lives in a pool of its own, so that a caller that goes away while
 * a thread works on its check only marks it; the check is freed when the
 * thread is done.
 *
 * The check logs through a log of its own, in its own pool: a copy of the
 * caller's log (the same files, level and connection number) whose
 * handler knows only the check, so that nothing it logs, before or after
 * its caller went away, touches the caller's connection.  When the thread
 * pool cannot take a crypt check, the answer is a temporary failure: a
 * password is never checked in the event loop.
 */


static u_char *ngx_mail_plus_check_log_error(ngx_log_t *log, u_char *buf,
    size_t len);
static ngx_int_t ngx_mail_plus_check_digest(ngx_mail_plus_check_t *check);
#if (NGX_THREADS)
static void ngx_mail_plus_check_thread(void *data, ngx_log_t *log);
static void ngx_mail_plus_check_thread_done(ngx_event_t *ev);
#endif


ngx_mail_plus_check_t *
ngx_mail_plus_check_create(ngx_mail_plus_main_conf_t *mpcf, ngx_log_t *log)
{
    ngx_pool_t             *pool;
    ngx_mail_plus_check_t  *check;

    pool = ngx_create_pool(1024, log);
    if (pool == NULL) {
        return NULL;
    }

    check = ngx_pcalloc(pool, sizeof(ngx_mail_plus_check_t));
    if (check == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    check->log = ngx_palloc(pool, sizeof(ngx_log_t));
    if (check->log == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    *check->log = *log;

    check->log->handler = ngx_mail_plus_check_log_error;
    check->log->data = check;
    check->log->action = NULL;

    pool->log = check->log;

    check->pool = pool;
    check->mpcf = mpcf;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, check->log, 0,
                   "mail plus check %p created", check);

    return check;
}


/* what the check knows of its client: no pointer to the caller's memory */

static u_char *
ngx_mail_plus_check_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    ngx_mail_plus_check_t  *check;

    check = log->data;

    if (check == NULL || check->auth.client.len == 0) {
        return buf;
    }

    return ngx_snprintf(buf, len, ", client: %V", &check->auth.client);
}


/* the login and the password are copied; the password NUL-terminated */

ngx_int_t
ngx_mail_plus_check_set(ngx_mail_plus_check_t *check, ngx_uint_t protocol,
    ngx_str_t *login, ngx_str_t *password, ngx_str_t *client)
{
    u_char  *p;

    check->auth.protocol = protocol;
    check->auth.check = (password != NULL);

    check->auth.login.data = ngx_pstrdup(check->pool, login);
    if (check->auth.login.data == NULL && login->len) {
        return NGX_ERROR;
    }

    check->auth.login.len = login->len;

    if (client) {
        check->auth.client.data = ngx_pstrdup(check->pool, client);
        if (check->auth.client.data == NULL && client->len) {
            return NGX_ERROR;
        }

        check->auth.client.len = client->len;
    }

    if (password == NULL) {
        return NGX_OK;
    }

    p = ngx_pnalloc(check->pool, password->len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, password->data, password->len);
    p[password->len] = '\0';

    check->auth.password.data = p;
    check->auth.password.len = password->len;

    return NGX_OK;
}


/* APOP or CRAM-MD5: the password set is the client's digest of "salt" */

ngx_int_t
ngx_mail_plus_check_set_digest(ngx_mail_plus_check_t *check,
    ngx_uint_t method, ngx_str_t *salt)
{
    ngx_str_t  s;

    s = *salt;

    while (s.len && (s.data[s.len - 1] == CR || s.data[s.len - 1] == LF)) {
        s.len--;
    }

    check->auth.method = method;

    check->auth.salt.data = ngx_pstrdup(check->pool, &s);
    if (check->auth.salt.data == NULL && s.len) {
        return NGX_ERROR;
    }

    check->auth.salt.len = s.len;

    return NGX_OK;
}


/*
 * a submission (SMTP AUTH, HTTP): the router checks the password; the
 * check needs a protocol the user's pool serves, so the first one with a
 * server is taken
 */

ngx_int_t
ngx_mail_plus_check_set_submission(ngx_mail_plus_check_t *check,
    ngx_str_t *login, ngx_str_t *password, ngx_str_t *client)
{
    ngx_uint_t             i, protocol;
    ngx_mail_plus_auth_t   auth;
    ngx_mail_plus_route_t  route;

    static ngx_uint_t  protocols[] = { NGX_MAIL_PLUS_SMTP, NGX_MAIL_PLUS_LMTP,
                                       NGX_MAIL_PLUS_IMAP, NGX_MAIL_PLUS_POP3 };

    ngx_memzero(&auth, sizeof(ngx_mail_plus_auth_t));
    auth.login = *login;
    auth.client = *client;

    protocol = NGX_MAIL_PLUS_SMTP;

    for (i = 0; i < sizeof(protocols) / sizeof(ngx_uint_t); i++) {
        auth.protocol = protocols[i];

        if (ngx_mail_plus_router_route(check->mpcf, &auth, &route,
                                       check->pool, check->log)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (route.status != NGX_MAIL_PLUS_TEMPFAIL) {
            protocol = protocols[i];
            break;
        }
    }

    return ngx_mail_plus_check_set(check, protocol, login, password, client);
}


/*
 * NGX_OK: check->route is the answer; NGX_AGAIN: a thread checks the
 * password and check->handler will be called; NGX_ERROR
 */

ngx_int_t
ngx_mail_plus_check_start(ngx_mail_plus_check_t *check)
{
    ngx_int_t               rc;
    ngx_mail_plus_user_t   *user;
#if (NGX_THREADS)
    ngx_thread_task_t      *task;
#endif

    if (ngx_mail_plus_router_route(check->mpcf, &check->auth, &check->route,
                                   check->pool, check->log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (check->router_only
        && check->auth.check
        && check->route.status == NGX_MAIL_PLUS_ALLOW
        && !check->route.verify
        && check->auth.method != NGX_MAIL_AUTH_APOP
        && check->auth.method != NGX_MAIL_AUTH_CRAM_MD5)
    {
        /* "auth backend": the caller cannot hand the password on */

        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, check->log, 0,
                       "mail plus check: the password would go unchecked");

        check->route.status = NGX_MAIL_PLUS_DENY;
        ngx_str_set(&check->route.reason,
                    "the pool's backends check passwords (\"auth backend\"), "
                    "and this login cannot pass the password on to them");
    }

    ngx_mail_plus_throttle_before(check);

    if (check->auth.method == NGX_MAIL_AUTH_APOP
        || check->auth.method == NGX_MAIL_AUTH_CRAM_MD5)
    {
        return ngx_mail_plus_check_digest(check);
    }

    if (!check->route.verify) {
        ngx_mail_plus_throttle_after(check);
        return NGX_OK;
    }

    user = check->route.user;

    if (user->scheme == NGX_MAIL_PLUS_SCHEME_CRYPT) {

        check->crypt_data = ngx_palloc(check->pool,
                                       ngx_mail_plus_password_crypt_size());
        if (check->crypt_data == NULL) {
            return NGX_ERROR;
        }

#if (NGX_THREADS)

        if (check->mpcf->thread_pool) {

            task = ngx_thread_task_alloc(check->pool, 0);
            if (task == NULL) {
                return NGX_ERROR;
            }

            task->ctx = check;
            task->handler = ngx_mail_plus_check_thread;
            task->event.data = check;
            task->event.handler = ngx_mail_plus_check_thread_done;

            if (ngx_thread_task_post(check->mpcf->thread_pool, task)
                == NGX_OK)
            {
                ngx_log_debug1(NGX_LOG_DEBUG_MAIL, check->log, 0,
                               "mail plus check %p in a thread", check);

                check->pending = 1;
                return NGX_AGAIN;
            }

            /* never in the event loop: the client may try again */

            ngx_log_error(NGX_LOG_WARN, check->log, 0,
                          "router thread pool is busy, "
                          "the login fails temporarily");

            check->route.status = NGX_MAIL_PLUS_TEMPFAIL;
            check->route.verify = 0;
            ngx_str_set(&check->route.reason, "the thread pool is busy");

            ngx_mail_plus_throttle_after(check);

            return NGX_OK;
        }

#endif
    }

    rc = ngx_mail_plus_password_check(user, &check->auth.password,
                                      check->pool, check->crypt_data);

    ngx_mail_plus_router_verified(&check->route, rc, check->log);

    ngx_mail_plus_throttle_after(check);

    return NGX_OK;
}


/*
 * a digest is checked in place (one MD5 or HMAC-MD5); a pool whose backend
 * checks passwords itself cannot take one, the backend would need the
 * cleartext
 */

static ngx_int_t
ngx_mail_plus_check_digest(ngx_mail_plus_check_t *check)
{
    ngx_int_t               rc;
    ngx_mail_plus_route_t  *route;

    route = &check->route;

    if (route->status == NGX_MAIL_PLUS_ALLOW && !route->verify) {
        route->status = NGX_MAIL_PLUS_DENY;
        ngx_str_set(&route->reason,
                    "APOP and CRAM-MD5 need a pool with \"auth router\"");
    }

    if (route->verify) {
        rc = ngx_mail_plus_password_digest(route->user, &check->auth,
                                           check->pool);

        ngx_mail_plus_router_verified(route, rc == NGX_ABORT ? NGX_DECLINED
                                                             : rc,
                                      check->log);

        if (rc == NGX_ABORT) {
            ngx_str_set(&route->reason,
                        "APOP and CRAM-MD5 need a {PLAIN} password");
        }
    }

    ngx_mail_plus_throttle_after(check);

    return NGX_OK;
}


void
ngx_mail_plus_check_free(ngx_mail_plus_check_t *check)
{
    if (check->pending) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, check->log, 0,
                       "mail plus check %p cancelled while in a thread",
                       check);

        check->cancelled = 1;
        return;
    }

    ngx_destroy_pool(check->pool);
}


#if (NGX_THREADS)

static void
ngx_mail_plus_check_thread(void *data, ngx_log_t *log)
{
    ngx_mail_plus_check_t *check = data;

    /* crypt_r() only: no pool, no log */

    check->rc = ngx_mail_plus_password_check(check->route.user,
                                             &check->auth.password, NULL,
                                             check->crypt_data);
}


static void
ngx_mail_plus_check_thread_done(ngx_event_t *ev)
{
    ngx_mail_plus_check_t *check = ev->data;

    check->pending = 0;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, check->log, 0,
                   "mail plus check %p done in its thread%s", check,
                   check->cancelled ? ", its caller is gone" : "");

    if (check->cancelled) {
        ngx_destroy_pool(check->pool);
        return;
    }

    ngx_mail_plus_router_verified(&check->route, check->rc, check->log);

    ngx_mail_plus_throttle_after(check);

    check->handler(check);
}

#endif
