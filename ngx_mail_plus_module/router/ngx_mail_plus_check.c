
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_router.h"
#include "ngx_mail_plus_directory.h"
#include "ngx_mail_plus_token.h"


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
 *
 * A login or a recipient that the users file does not know is asked of
 * the directories ("router_directory") first, after throttling: a locked
 * login does not reach them.  Their answer is a user as the users file
 * would give it, and the check goes on from there.
 *
 * A token login (OAUTHBEARER, XOAUTH2) has its token checked first
 * (token/), after throttling, as a password would be: a refused token
 * counts as a failed login.  The token names the user; from there the
 * check is the route of a login without a password, and the backend
 * login is the pool's "token_login".
 */


static u_char *ngx_mail_plus_check_log_error(ngx_log_t *log, u_char *buf,
    size_t len);
static ngx_int_t ngx_mail_plus_check_token(ngx_mail_plus_check_t *check);
static void ngx_mail_plus_check_token_done(ngx_mail_plus_token_req_t *req);
static ngx_int_t ngx_mail_plus_check_token_answer(
    ngx_mail_plus_check_t *check);
static ngx_int_t ngx_mail_plus_check_directory(ngx_mail_plus_check_t *check);
static void ngx_mail_plus_check_dir_done(ngx_mail_plus_dir_req_t *req);
static ngx_int_t ngx_mail_plus_check_dir_answer(ngx_mail_plus_check_t *check);
static void ngx_mail_plus_check_resume(ngx_mail_plus_check_t *check,
    ngx_int_t rc);
static ngx_int_t ngx_mail_plus_check_dir_user(ngx_mail_plus_check_t *check,
    ngx_mail_plus_dir_req_t *req);
static ngx_int_t ngx_mail_plus_check_route(ngx_mail_plus_check_t *check);
static ngx_int_t ngx_mail_plus_check_protocol(ngx_mail_plus_check_t *check);
static void ngx_mail_plus_check_verified(ngx_mail_plus_check_t *check,
    ngx_int_t rc);
static ngx_int_t ngx_mail_plus_check_digest(ngx_mail_plus_check_t *check);
static void ngx_mail_plus_check_destroy(ngx_mail_plus_check_t *check);
#if (NGX_THREADS)
static void ngx_mail_plus_check_thread(void *data, ngx_log_t *log);
static void ngx_mail_plus_check_thread_done(ngx_event_t *ev);
#endif


ngx_mail_plus_check_t *
ngx_mail_plus_check_create(ngx_mail_plus_main_conf_t *mpcf, ngx_log_t *log)
{
    ngx_pool_t             *pool;
    ngx_mail_plus_check_t  *check;

    pool = ngx_mail_plus_own_pool(log, sizeof(ngx_mail_plus_check_t),
                                  (void **) &check);
    if (pool == NULL) {
        return NULL;
    }

    check->log = pool->log;
    check->log->handler = ngx_mail_plus_check_log_error;
    check->log->data = check;

    check->pool = pool;
    check->mpcf = mpcf;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, check->log, 0,
                   "mail plus check %p created", check);

    return check;
}


/*
 * a pool of its own for an object that may outlive its caller (a check, a
 * directory's or a token verifier's request), with a log of its own in it:
 * a copy of the caller's (the same files, level and connection number)
 * without its handler, so that nothing logged touches the caller's memory;
 * *obj is zeroed memory of "size" in it
 */

ngx_pool_t *
ngx_mail_plus_own_pool(ngx_log_t *log, size_t size, void **obj)
{
    ngx_log_t   *own;
    ngx_pool_t  *pool;

    pool = ngx_create_pool(1024, log);
    if (pool == NULL) {
        return NULL;
    }

    *obj = ngx_pcalloc(pool, size);
    own = ngx_palloc(pool, sizeof(ngx_log_t));

    if (*obj == NULL || own == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    *own = *log;

    own->handler = NULL;
    own->data = NULL;
    own->action = NULL;

    pool->log = own;

    return pool;
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
 * server is taken, once the user is known
 */

ngx_int_t
ngx_mail_plus_check_set_submission(ngx_mail_plus_check_t *check,
    ngx_str_t *login, ngx_str_t *password, ngx_str_t *client)
{
    check->submission = 1;

    return ngx_mail_plus_check_set(check, NGX_MAIL_PLUS_SMTP, login, password,
                                   client);
}


/*
 * a token login: "user" is the user the client named (OAUTHBEARER's
 * authzid, XOAUTH2's "user="), possibly empty; the token is copied
 */

ngx_int_t
ngx_mail_plus_check_set_token(ngx_mail_plus_check_t *check,
    ngx_uint_t protocol, ngx_str_t *user, ngx_str_t *token, ngx_uint_t mech,
    ngx_str_t *client)
{
    if (ngx_mail_plus_check_set(check, protocol, user, NULL, client)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    check->auth.token.data = ngx_pnalloc(check->pool, token->len + 1);
    if (check->auth.token.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(check->auth.token.data, token->data, token->len);
    check->auth.token.data[token->len] = '\0';
    check->auth.token.len = token->len;

    check->auth.mech = mech;

    return NGX_OK;
}


/* a recipient in a local domain: its route, as ngx_mail_plus_recipient() */

ngx_int_t
ngx_mail_plus_check_set_recipient(ngx_mail_plus_check_t *check,
    ngx_str_t *addr)
{
    check->recipient = 1;
    check->rc = NGX_DECLINED;

    return ngx_mail_plus_check_set(check, NGX_MAIL_PLUS_LMTP, addr, NULL,
                                   NULL);
}


static ngx_int_t
ngx_mail_plus_check_protocol(ngx_mail_plus_check_t *check)
{
    ngx_uint_t             i;
    ngx_mail_plus_auth_t   auth;
    ngx_mail_plus_route_t  route;

    static ngx_uint_t  protocols[] = { NGX_MAIL_PLUS_SMTP, NGX_MAIL_PLUS_LMTP,
                                       NGX_MAIL_PLUS_IMAP, NGX_MAIL_PLUS_POP3 };

    auth = check->auth;
    auth.check = 0;

    for (i = 0; i < sizeof(protocols) / sizeof(ngx_uint_t); i++) {
        auth.protocol = protocols[i];

        if (ngx_mail_plus_router_route(check->mpcf, &auth, &route,
                                       check->pool, check->log)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (route.status != NGX_MAIL_PLUS_TEMPFAIL) {
            check->auth.protocol = protocols[i];
            break;
        }
    }

    return NGX_OK;
}


/*
 * NGX_OK: check->route is the answer; NGX_AGAIN: a thread checks the
 * password and check->handler will be called; NGX_ERROR
 */

ngx_int_t
ngx_mail_plus_check_start(ngx_mail_plus_check_t *check)
{
    ngx_int_t  rc;

    if (check->auth.token.len) {
        return ngx_mail_plus_check_token(check);
    }

    rc = ngx_mail_plus_check_directory(check);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_mail_plus_check_route(check);
}


/*
 * a token login: throttling, then the token's verifier; NGX_AGAIN (the
 * handler will be called), NGX_OK, NGX_ERROR
 */

static ngx_int_t
ngx_mail_plus_check_token(ngx_mail_plus_check_t *check)
{
    ngx_int_t                   rc;
    ngx_mail_plus_token_req_t  *req;

    /* counted as a password is, while it is being checked */

    check->auth.check = 1;

    check->route.status = NGX_MAIL_PLUS_ALLOW;
    check->route.login = check->auth.login;
    check->route.token = 1;

    ngx_mail_plus_throttle_before(check);

    check->throttled = 1;

    if (check->route.status != NGX_MAIL_PLUS_ALLOW) {
        ngx_mail_plus_throttle_after(check);
        return NGX_OK;
    }

    /*
     * the user named and the token reach a verifier, logs and headers
     * before the router sees them: refused here as the router refuses a
     * login or a password with a control character
     */

    if (ngx_mail_plus_text_has_ctl(&check->auth.login)
        || ngx_mail_plus_text_has_ctl(&check->auth.token))
    {
        check->route.status = NGX_MAIL_PLUS_DENY;
        ngx_str_set(&check->route.reason,
                    "control character in the login or the token");
        ngx_mail_plus_throttle_after(check);
        return NGX_OK;
    }

    if (!ngx_mail_plus_token_enabled(check->mpcf)) {
        check->route.status = NGX_MAIL_PLUS_DENY;
        check->route.bad_token = 1;
        ngx_str_set(&check->route.reason, "no token verifier is configured");
        ngx_mail_plus_throttle_after(check);
        return NGX_OK;
    }

    req = ngx_mail_plus_token_create(check->mpcf, check->log);
    if (req == NULL) {
        return NGX_ERROR;
    }

    check->token = req;

    if (ngx_mail_plus_token_set(req, &check->auth.token, &check->auth.login,
                                check->auth.mech, check->auth.protocol,
                                &check->auth.client)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    req->handler = ngx_mail_plus_check_token_done;
    req->data = check;

    rc = ngx_mail_plus_token_verify(req);

    if (rc == NGX_AGAIN) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, check->log, 0,
                       "mail plus check %p waits for the token's verifier",
                       check);
        return NGX_AGAIN;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_mail_plus_check_token_answer(check);
}


static void
ngx_mail_plus_check_token_done(ngx_mail_plus_token_req_t *req)
{
    ngx_mail_plus_check_t  *check;

    check = req->data;

    ngx_mail_plus_check_resume(check, ngx_mail_plus_check_token_answer(check));
}


/* the verifier's answer: a refusal or a failure now, or the user's route */

static ngx_int_t
ngx_mail_plus_check_token_answer(ngx_mail_plus_check_t *check)
{
    u_char                     *p;
    size_t                      len;
    ngx_int_t                   rc;
    ngx_mail_plus_route_t      *route;
    ngx_mail_plus_token_req_t  *req;

    req = check->token;
    route = &check->route;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, check->log, 0,
                   "mail plus check %p: the token's verifier answered %ui",
                   check, req->result);

    if (req->result != NGX_MAIL_PLUS_TOKEN_VALID) {

        len = sizeof("the token could not be checked: ") - 1
              + (req->error ? ngx_strlen(req->error) : 0);

        p = ngx_pnalloc(check->pool, len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        route->reason.data = p;

        if (req->result == NGX_MAIL_PLUS_TOKEN_INVALID) {
            route->status = NGX_MAIL_PLUS_DENY;
            route->bad_token = 1;
            p = ngx_sprintf(p, "invalid token: %s",
                            req->error ? req->error : "refused");

        } else {
            route->status = NGX_MAIL_PLUS_TEMPFAIL;
            check->rc = NGX_BUSY;
            p = ngx_sprintf(p, "the token could not be checked: %s",
                            req->error ? req->error : "no answer");
        }

        route->reason.len = p - route->reason.data;

        ngx_mail_plus_throttle_after(check);

        return NGX_OK;
    }

    /* the user the token names; no password from here on */

    check->auth.login.data = ngx_pstrdup(check->pool, &req->login);
    if (check->auth.login.data == NULL) {
        return NGX_ERROR;
    }

    check->auth.login.len = req->login.len;
    check->auth.check = 0;

    rc = ngx_mail_plus_check_directory(check);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_mail_plus_check_route(check);
}


/*
 * the directories, if the users file does not know the login: NGX_AGAIN
 * (check->handler will be called), NGX_OK (answered), NGX_DECLINED (not
 * asked), NGX_ERROR
 */

static ngx_int_t
ngx_mail_plus_check_directory(ngx_mail_plus_check_t *check)
{
    ngx_int_t                 rc;
    ngx_str_t                 lc;
    ngx_mail_plus_route_t     route;
    ngx_mail_plus_dir_req_t  *req;

    if (check->mpcf->directories == NULL
        || check->auth.method == NGX_MAIL_AUTH_APOP
        || check->auth.method == NGX_MAIL_AUTH_CRAM_MD5
        || check->auth.login.len == 0
        || check->auth.login.len > 255
        || ngx_mail_plus_text_has_ctl(&check->auth.login)
        || (check->auth.check
            && ngx_mail_plus_text_has_ctl(&check->auth.password)))
    {
        /* the router refuses it, as without directories */
        return NGX_DECLINED;
    }

    if (check->recipient) {
        if (ngx_mail_plus_recipient_local_part(&check->auth.login) != NGX_OK) {
            return NGX_DECLINED;
        }

        rc = ngx_mail_plus_recipient(check->mpcf, &check->auth.login, &route,
                                     check->pool, check->log);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK && route.user) {
            return NGX_DECLINED;
        }

    } else {
        lc.len = check->auth.login.len;
        lc.data = ngx_pnalloc(check->pool, lc.len);
        if (lc.data == NULL) {
            return NGX_ERROR;
        }

        ngx_strlow(lc.data, check->auth.login.data, lc.len);

        if (ngx_mail_plus_users_find(check->mpcf->users, &lc)) {
            return NGX_DECLINED;
        }
    }

    /* a locked login does not reach the directories */

    check->route.status = NGX_MAIL_PLUS_ALLOW;
    check->route.login = check->auth.login;

    ngx_mail_plus_throttle_before(check);

    check->throttled = 1;

    if (check->route.status != NGX_MAIL_PLUS_ALLOW) {
        ngx_mail_plus_throttle_after(check);
        return NGX_OK;
    }

    req = ngx_mail_plus_dir_create(check->mpcf, check->log);
    if (req == NULL) {
        return NGX_ERROR;
    }

    check->dir = req;

    /* a route without a password is a question of existence */

    req->type = (check->recipient || !check->auth.check)
                ? NGX_MAIL_PLUS_DIR_USERDB : NGX_MAIL_PLUS_DIR_PASSDB;
    req->protocol = check->auth.protocol;
    req->handler = ngx_mail_plus_check_dir_done;
    req->data = check;

    req->login.data = ngx_pstrdup(req->pool, &check->auth.login);
    if (req->login.data == NULL) {
        return NGX_ERROR;
    }

    req->login.len = check->auth.login.len;

    if (check->auth.client.len) {
        req->client.data = ngx_pstrdup(req->pool, &check->auth.client);
        if (req->client.data == NULL) {
            return NGX_ERROR;
        }

        req->client.len = check->auth.client.len;
    }

    if (req->type == NGX_MAIL_PLUS_DIR_PASSDB) {
        req->password.data = ngx_pnalloc(req->pool,
                                         check->auth.password.len + 1);
        if (req->password.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(req->password.data, check->auth.password.data,
                   check->auth.password.len);
        req->password.data[check->auth.password.len] = '\0';
        req->password.len = check->auth.password.len;
    }

    rc = ngx_mail_plus_dir_lookup(req);

    if (rc == NGX_AGAIN) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, check->log, 0,
                       "mail plus check %p waits for a directory", check);
        return NGX_AGAIN;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_mail_plus_check_dir_answer(check);
}


static void
ngx_mail_plus_check_dir_done(ngx_mail_plus_dir_req_t *req)
{
    ngx_mail_plus_check_t  *check;

    check = req->data;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, check->log, 0,
                   "mail plus check %p: the directories answered", check);

    ngx_mail_plus_check_resume(check, ngx_mail_plus_check_dir_answer(check));
}


/*
 * a step answered later: the caller's handler, unless the check goes on
 * (NGX_AGAIN); an error is a temporary failure
 */

static void
ngx_mail_plus_check_resume(ngx_mail_plus_check_t *check, ngx_int_t rc)
{
    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc != NGX_OK) {
        check->route.status = NGX_MAIL_PLUS_TEMPFAIL;
        check->route.verify = 0;
        ngx_str_set(&check->route.reason, "router error");
    }

    check->handler(check);
}


/* the directories' answer: a user, none, or a refusal or failure now */

static ngx_int_t
ngx_mail_plus_check_dir_answer(ngx_mail_plus_check_t *check)
{
    ngx_int_t                 rc;
    ngx_mail_plus_route_t    *route;
    ngx_mail_plus_dir_req_t  *req;

    req = check->dir;
    route = &check->route;

    switch (req->result) {

    case NGX_MAIL_PLUS_DIR_FOUND:

        rc = ngx_mail_plus_check_dir_user(check, req);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            ngx_memzero(route, sizeof(ngx_mail_plus_route_t));
            route->status = NGX_MAIL_PLUS_TEMPFAIL;
            route->login = check->auth.login;
            ngx_str_set(&route->reason,
                        "the directory's target is not configured");
            check->rc = NGX_BUSY;
            ngx_mail_plus_throttle_after(check);
            return NGX_OK;
        }

        break;

    case NGX_MAIL_PLUS_DIR_UNKNOWN:
        check->auth.user = NULL;
        check->auth.looked_up = 1;
        break;

    case NGX_MAIL_PLUS_DIR_REFUSED:
        ngx_memzero(route, sizeof(ngx_mail_plus_route_t));
        route->status = NGX_MAIL_PLUS_DENY;
        route->login = check->auth.login;
        ngx_str_set(&route->reason, "wrong password");
        ngx_mail_plus_throttle_after(check);
        return NGX_OK;

    default: /* NGX_MAIL_PLUS_DIR_TEMPFAIL */
        ngx_memzero(route, sizeof(ngx_mail_plus_route_t));
        route->status = NGX_MAIL_PLUS_TEMPFAIL;
        route->login = check->auth.login;
        ngx_str_set(&route->reason, "no directory could answer");
        check->rc = NGX_BUSY;
        ngx_mail_plus_throttle_after(check);
        return NGX_OK;
    }

    return ngx_mail_plus_check_route(check);
}


/*
 * a directory's user as the users file would have it: NGX_OK,
 * NGX_DECLINED when its pool or host is not one of ours (logged),
 * NGX_ERROR
 */

static ngx_int_t
ngx_mail_plus_check_dir_user(ngx_mail_plus_check_t *check,
    ngx_mail_plus_dir_req_t *req)
{
    char                  *err;
    ngx_mail_plus_user_t  *user;

    user = ngx_pcalloc(check->pool, sizeof(ngx_mail_plus_user_t));
    if (user == NULL) {
        return NGX_ERROR;
    }

    user->login.len = check->auth.login.len;
    user->login.data = ngx_pnalloc(check->pool, user->login.len);
    if (user->login.data == NULL) {
        return NGX_ERROR;
    }

    ngx_strlow(user->login.data, check->auth.login.data, user->login.len);

    err = NULL;

    if (ngx_mail_plus_users_fields(check->mpcf, check->pool, user,
                                   &req->fields, &err)
        != NGX_OK)
    {
        if (err) {
            ngx_log_error(NGX_LOG_ERR, check->log, 0,
                          "directory \"%V\" answered for \"%V\": %s",
                          &req->dir->name, &check->auth.login, err);
            return NGX_DECLINED;
        }

        return NGX_ERROR;
    }

    if (req->verified) {
        user->checked = 1;

    } else if (req->type == NGX_MAIL_PLUS_DIR_PASSDB && !user->nopassword) {

        if (req->hash.len == 0) {
            ngx_log_error(NGX_LOG_ERR, check->log, 0,
                          "directory \"%V\" gave no password for \"%V\"",
                          &req->dir->name, &check->auth.login);
            return NGX_DECLINED;
        }

        if (ngx_mail_plus_users_password(check->pool, user, &req->hash, &err)
            != NGX_OK)
        {
            if (err) {
                ngx_log_error(NGX_LOG_ERR, check->log, 0,
                              "directory \"%V\" gave a password for "
                              "\"%V\" that cannot be checked: %s",
                              &req->dir->name, &check->auth.login, err);
                return NGX_DECLINED;
            }

            return NGX_ERROR;
        }
    }

    check->auth.user = user;
    check->auth.looked_up = 1;

    return NGX_OK;
}


/* the route, the throttles, and the password check if the router makes it */

static ngx_int_t
ngx_mail_plus_check_route(ngx_mail_plus_check_t *check)
{
    ngx_int_t               rc;
    ngx_mail_plus_user_t   *user;
#if (NGX_THREADS)
    ngx_thread_task_t      *task;
#endif

    if (check->recipient) {
        rc = check->auth.looked_up
             ? ngx_mail_plus_recipient_user(check->mpcf, &check->auth,
                                            &check->route, check->pool,
                                            check->log)
             : ngx_mail_plus_recipient(check->mpcf, &check->auth.login,
                                       &check->route, check->pool,
                                       check->log);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        check->rc = rc;

        return NGX_OK;
    }

    if (check->submission && ngx_mail_plus_check_protocol(check) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_mail_plus_router_route(check->mpcf, &check->auth, &check->route,
                                   check->pool, check->log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (check->auth.token.len) {

        /* the token was checked: the success counts as a login's */

        check->route.token = 1;
        check->route.verify = 0;
        check->auth.check = 1;
    }

    if (check->router_only
        && check->auth.check
        && !check->auth.token.len
        && check->route.status == NGX_MAIL_PLUS_ALLOW
        && !check->route.verify
        && !check->route.checked
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

    if (!check->throttled) {
        ngx_mail_plus_throttle_before(check);
    }

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

    if (user->scheme == NGX_MAIL_PLUS_SCHEME_CRYPT && check->dir == NULL
        && ngx_mail_plus_dir_cache_file_get(check->mpcf, check->auth.protocol,
                                            &user->login, &user->password,
                                            &check->auth.password,
                                            check->hmac, &check->hmac_len)
           == NGX_OK)
    {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, check->log, 0,
                       "mail plus check: the password was found right "
                       "before (cached)");

        ngx_mail_plus_check_verified(check, NGX_OK);
        ngx_mail_plus_throttle_after(check);

        return NGX_OK;
    }

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

    ngx_mail_plus_check_verified(check, rc);

    ngx_mail_plus_throttle_after(check);

    return NGX_OK;
}


/* the router checked a password: the route, and the directory's cache */

static void
ngx_mail_plus_check_verified(ngx_mail_plus_check_t *check, ngx_int_t rc)
{
    ngx_mail_plus_router_verified(&check->route, rc, check->log);

    if (check->dir && (rc == NGX_OK || rc == NGX_DECLINED)) {
        ngx_mail_plus_dir_verified(check->dir, rc == NGX_OK);
    }

    /* a users file's crypt hash found right: its HMAC remembered */

    if (check->hmac_len && rc == NGX_OK && check->crypt_data) {
        ngx_mail_plus_dir_cache_file_put(check->mpcf, check->auth.protocol,
                                         &check->route.user->login,
                                         check->hmac, check->log);
    }
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

    ngx_mail_plus_check_destroy(check);
}


/* a request to a directory still out is only marked: it frees itself */

static void
ngx_mail_plus_check_destroy(ngx_mail_plus_check_t *check)
{
    if (check->token) {
        ngx_mail_plus_token_free(check->token);
        check->token = NULL;
    }

    if (check->auth.token.data) {
        ngx_explicit_memzero(check->auth.token.data, check->auth.token.len);
    }

    if (check->dir) {
        ngx_mail_plus_dir_free(check->dir);
        check->dir = NULL;
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
        ngx_mail_plus_check_destroy(check);
        return;
    }

    ngx_mail_plus_check_verified(check, check->rc);

    ngx_mail_plus_throttle_after(check);

    check->handler(check);
}

#endif
