
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_dir_dovecot.h"


/*
 * The lines of Dovecot's auth service: the server's handshake, then the
 * replies.  An OK to an AUTH is a user found with its password checked,
 * its extra fields the user's target; FAIL a wrong password or, with
 * "temp" or "code=temp_fail", a temporary failure.  USER, NOTFOUND, FAIL
 * answer a USER.  Values are tab-unescaped; one of ours that holds a
 * control character then makes the answer a temporary failure.  A token
 * (OAUTHBEARER, XOAUTH2) that Dovecot refuses gets a CONT with the RFC 7628
 * error status first: the dummy response "\001" goes back, and the FAIL
 * follows.
 */


static ngx_int_t ngx_mail_plus_dovecot_handshake(
    ngx_mail_plus_dovecot_conn_t *conn, ngx_str_t *arg, ngx_uint_t n);
static ngx_int_t ngx_mail_plus_dovecot_reply(ngx_mail_plus_dovecot_conn_t *conn,
    ngx_str_t *arg, ngx_uint_t n);
static ngx_int_t ngx_mail_plus_dovecot_cont(ngx_mail_plus_dovecot_conn_t *conn,
    ngx_mail_plus_dir_req_t *req);
static void ngx_mail_plus_dovecot_user(ngx_mail_plus_dir_req_t *req,
    ngx_str_t *arg, ngx_uint_t n);
static void ngx_mail_plus_dovecot_fields(ngx_mail_plus_dir_req_t *req,
    ngx_str_t *arg, ngx_uint_t n, ngx_uint_t fail);
static ngx_int_t ngx_mail_plus_dovecot_unescape(ngx_pool_t *pool,
    ngx_str_t *s);


#define NGX_MAIL_PLUS_DOVECOT_ARGS  64   /* of a line, the rest ignored */


/* the extra fields of a reply that make a user's target */

static ngx_str_t  ngx_mail_plus_dovecot_keys[] = {
    ngx_string("pool"),
    ngx_string("host"),
    ngx_string("port"),
    ngx_string("destuser"),
    ngx_string("user"),
    ngx_string("nologin"),
    ngx_string("reason"),
    ngx_string("proxy"),
    ngx_string("proxy_maybe"),
    ngx_string("nopassword"),
    ngx_null_string
};


/* a line from Dovecot, split at TABs: NGX_OK, NGX_ERROR to close */

ngx_int_t
ngx_mail_plus_dovecot_line(ngx_mail_plus_dovecot_conn_t *conn, u_char *line,
    size_t len)
{
    u_char      *p, *last, *tab;
    ngx_str_t    arg[NGX_MAIL_PLUS_DOVECOT_ARGS];
    ngx_uint_t   n;

    last = line + len;

    n = 0;
    p = line;

    while (n < NGX_MAIL_PLUS_DOVECOT_ARGS) {
        tab = ngx_strlchr(p, last, '\t');

        arg[n].data = p;
        arg[n].len = (tab ? tab : last) - p;
        n++;

        if (tab == NULL) {
            break;
        }

        p = tab + 1;
    }

    if (conn->state != NGX_MAIL_PLUS_DOVECOT_READY) {
        return ngx_mail_plus_dovecot_handshake(conn, arg, n);
    }

    return ngx_mail_plus_dovecot_reply(conn, arg, n);
}


#define ngx_mail_plus_dovecot_is(s, name)                                     \
    ((s)->len == sizeof(name) - 1                                             \
     && ngx_strncmp((s)->data, name, sizeof(name) - 1) == 0)


/*
 * the server's handshake: VERSION (major 1), MECH (PLAIN must be one),
 * SPID, CUID, COOKIE, DONE for the client socket; VERSION, SPID for the
 * master one
 */

static ngx_int_t
ngx_mail_plus_dovecot_handshake(ngx_mail_plus_dovecot_conn_t *conn,
    ngx_str_t *arg, ngx_uint_t n)
{
    ngx_connection_t              *c;
    ngx_mail_plus_dovecot_pool_t  *pool;

    pool = conn->pool;
    c = conn->peer.connection;

    if (ngx_mail_plus_dovecot_is(&arg[0], "VERSION")) {
        if (n < 2 || !ngx_mail_plus_dovecot_is(&arg[1], "1")) {
            ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                          "directory \"%V\": %V is not Dovecot's auth "
                          "protocol version 1", &pool->dir->name,
                          &pool->url->url);
            return NGX_ERROR;
        }

        conn->version = 1;
        return NGX_OK;
    }

    if (!conn->version) {
        return NGX_ERROR;
    }

    if (ngx_mail_plus_dovecot_is(&arg[0], "MECH")) {
        if (n > 1 && ngx_mail_plus_dovecot_is(&arg[1], "PLAIN")) {
            conn->plain = 1;

        } else if (n > 1 && ngx_mail_plus_dovecot_is(&arg[1], "OAUTHBEARER")) {
            conn->oauthbearer = 1;

        } else if (n > 1 && ngx_mail_plus_dovecot_is(&arg[1], "XOAUTH2")) {
            conn->xoauth2 = 1;
        }

        return NGX_OK;
    }

    if (pool->master ? !ngx_mail_plus_dovecot_is(&arg[0], "SPID")
                     : !ngx_mail_plus_dovecot_is(&arg[0], "DONE"))
    {
        /* SPID, CUID, COOKIE: not needed */
        return NGX_OK;
    }

    if (!pool->master && !conn->plain && !conn->oauthbearer
        && !conn->xoauth2)
    {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "directory \"%V\": %V offers neither PLAIN nor "
                      "OAUTHBEARER nor XOAUTH2 (auth_mechanisms)",
                      &pool->dir->name, &pool->url->url);
        return NGX_ERROR;
    }

    conn->state = NGX_MAIL_PLUS_DOVECOT_READY;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, pool->log, 0,
                   "directory dovecot: connection %ui handshake done",
                   conn->slot);

    ngx_mail_plus_dir_state(pool->dir, 1, NULL, pool->log);

    ngx_mail_plus_dovecot_dispatch(pool);

    return NGX_OK;
}


/* a reply: OK, FAIL, CONT of the client socket; USER, NOTFOUND, FAIL */

static ngx_int_t
ngx_mail_plus_dovecot_reply(ngx_mail_plus_dovecot_conn_t *conn,
    ngx_str_t *arg, ngx_uint_t n)
{
    ngx_int_t                      id;
    ngx_uint_t                     i, temp;
    ngx_queue_t                   *q;
    ngx_mail_plus_dir_req_t       *req;
    ngx_mail_plus_dovecot_req_t   *dr;
    ngx_mail_plus_dovecot_pool_t  *pool;

    pool = conn->pool;

    if (n < 2) {
        return NGX_ERROR;
    }

    id = ngx_atoi(arg[1].data, arg[1].len);

    if (id == NGX_ERROR || id > 0xffffffff) {
        return NGX_ERROR;
    }

    req = NULL;

    for (q = ngx_queue_head(&conn->requests);
         q != ngx_queue_sentinel(&conn->requests);
         q = ngx_queue_next(q))
    {
        req = ngx_queue_data(q, ngx_mail_plus_dir_req_t, queue);
        dr = req->ctx;

        if (dr->id == (uint32_t) id) {
            break;
        }

        req = NULL;
    }

    if (req == NULL) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, pool->log, 0,
                       "directory dovecot: connection %ui: a reply to %i, "
                       "no such request", conn->slot, id);
        return NGX_OK;
    }

    if (!pool->master && req->mech
        && ngx_mail_plus_dovecot_is(&arg[0], "CONT"))
    {
        return ngx_mail_plus_dovecot_cont(conn, req);
    }

    ngx_queue_remove(&req->queue);
    conn->nrequests--;

    ngx_mail_plus_dovecot_timer(conn);

    if (pool->master) {

        if (ngx_mail_plus_dovecot_is(&arg[0], "USER")) {
            req->result = NGX_MAIL_PLUS_DIR_FOUND;
            ngx_mail_plus_dovecot_fields(req, &arg[3], n > 3 ? n - 3 : 0, 0);

        } else if (ngx_mail_plus_dovecot_is(&arg[0], "NOTFOUND")) {
            req->result = NGX_MAIL_PLUS_DIR_UNKNOWN;

        } else {
            req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;
            ngx_str_set(&req->error, "Dovecot's userdb lookup failed");
        }

    } else if (ngx_mail_plus_dovecot_is(&arg[0], "OK")) {
        req->result = NGX_MAIL_PLUS_DIR_FOUND;
        req->verified = 1;
        ngx_mail_plus_dovecot_fields(req, &arg[2], n - 2, 0);

        if (req->mech) {
            ngx_mail_plus_dovecot_user(req, &arg[2], n - 2);
        }

    } else if (ngx_mail_plus_dovecot_is(&arg[0], "FAIL")) {
        temp = 0;

        for (i = 2; i < n; i++) {
            if (ngx_mail_plus_dovecot_is(&arg[i], "temp")
                || ngx_mail_plus_dovecot_is(&arg[i], "code=temp_fail"))
            {
                temp = 1;
            }
        }

        if (temp) {
            req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;
            ngx_str_set(&req->error, "Dovecot failed temporarily");

        } else {
            req->result = NGX_MAIL_PLUS_DIR_REFUSED;
            ngx_mail_plus_dovecot_fields(req, &arg[2], n - 2, 1);
        }

    } else {
        /* CONT: PLAIN has no second step */
        req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;
        ngx_str_set(&req->error, "Dovecot answered neither OK nor FAIL");
    }

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "directory dovecot: request %p answered %ui on "
                   "connection %ui", req, req->result, conn->slot);

    ngx_mail_plus_dovecot_answer(pool, req, req->result, NULL);

    ngx_mail_plus_dir_state(pool->dir, 1, NULL, pool->log);

    ngx_mail_plus_dovecot_dispatch(pool);

    return NGX_OK;
}


/*
 * a CONT to a token's AUTH: the error exchange (RFC 7628 3.2.3), answered
 * once with the dummy response; its JSON status is not read, the FAIL
 * that follows is the answer
 */

static ngx_int_t
ngx_mail_plus_dovecot_cont(ngx_mail_plus_dovecot_conn_t *conn,
    ngx_mail_plus_dir_req_t *req)
{
    ngx_buf_t                    *b;
    ngx_mail_plus_dovecot_req_t  *dr;

    dr = req->ctx;
    b = conn->out;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "directory dovecot: request %p continued on "
                   "connection %ui", req, conn->slot);

    if (dr->cont
        || (size_t) (b->end - b->last)
           < sizeof("CONT\t4294967295\tAQ==\n") - 1)
    {
        ngx_queue_remove(&req->queue);
        conn->nrequests--;

        ngx_mail_plus_dovecot_answer(conn->pool, req,
                                     NGX_MAIL_PLUS_DIR_TEMPFAIL,
                                     "Dovecot continued the token's "
                                     "login more than once");
        return NGX_OK;
    }

    dr->cont = 1;

    b->last = ngx_sprintf(b->last, "CONT\t%uD\tAQ==\n", dr->id);

    return ngx_mail_plus_dovecot_flush(conn);
}


/* the "user=" of an OK to a token's AUTH: the user the token names */

static void
ngx_mail_plus_dovecot_user(ngx_mail_plus_dir_req_t *req, ngx_str_t *arg,
    ngx_uint_t n)
{
    ngx_str_t   value;
    ngx_uint_t  i;

    if (req->result != NGX_MAIL_PLUS_DIR_FOUND) {
        return;
    }

    for (i = 0; i < n; i++) {

        if (arg[i].len <= 5 || ngx_strncmp(arg[i].data, "user=", 5) != 0) {
            continue;
        }

        value.data = arg[i].data + 5;
        value.len = arg[i].len - 5;

        if (ngx_mail_plus_dovecot_unescape(req->pool, &value) != NGX_OK
            || ngx_mail_plus_text_has_ctl(&value))
        {
            break;
        }

        req->user = value;
        return;
    }

    req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;
    ngx_str_set(&req->error, "Dovecot's OK named no valid user");
}


/*
 * the extra fields of a reply into the request's user fields; a field of
 * ours that holds a control character, once unescaped, or a value that
 * cannot be right makes the answer TEMPFAIL.  A FAIL with "nologin" is a
 * user found whose password was right, refused with its reason.
 */

static void
ngx_mail_plus_dovecot_fields(ngx_mail_plus_dir_req_t *req, ngx_str_t *arg,
    ngx_uint_t n, ngx_uint_t fail)
{
    u_char      *eq;
    ngx_str_t    key, value;
    ngx_uint_t   i, k, nologin;

    nologin = 0;

    for (i = 0; i < n; i++) {

        eq = ngx_strlchr(arg[i].data, arg[i].data + arg[i].len, '=');

        key.data = arg[i].data;
        key.len = (eq ? eq : arg[i].data + arg[i].len) - key.data;

        for (k = 0; ngx_mail_plus_dovecot_keys[k].len; k++) {
            if (key.len == ngx_mail_plus_dovecot_keys[k].len
                && ngx_strncmp(key.data, ngx_mail_plus_dovecot_keys[k].data,
                               key.len)
                   == 0)
            {
                break;
            }
        }

        if (ngx_mail_plus_dovecot_keys[k].len == 0) {
            continue;
        }

        if (eq) {
            value.data = eq + 1;
            value.len = arg[i].data + arg[i].len - value.data;

        } else {
            ngx_str_set(&value, "");
        }

        if (ngx_mail_plus_dovecot_unescape(req->pool, &value) != NGX_OK) {
            req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;
            ngx_str_set(&req->error, "out of memory");
            return;
        }

        if (ngx_mail_plus_user_field(&req->fields, &key, &value)
            != NGX_OK)
        {
            req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;

            req->error.data = ngx_pnalloc(req->pool,
                                          sizeof("Dovecot's field \"\" is "
                                                 "invalid") + key.len);
            if (req->error.data == NULL) {
                ngx_str_set(&req->error, "an invalid field");
                return;
            }

            req->error.len = ngx_sprintf(req->error.data,
                                         "Dovecot's field \"%V\" is invalid",
                                         &key)
                             - req->error.data;
            return;
        }

        if (ngx_mail_plus_dovecot_is(&key, "nologin")) {
            nologin = 1;
        }
    }

    if (fail && nologin) {
        req->result = NGX_MAIL_PLUS_DIR_FOUND;
        req->verified = 1;
        req->fields.nologin = 1;
    }
}


/*
 * Dovecot's tab-escaping, undone in a copy: \001 then "0" NUL, "1" \001,
 * "t" TAB, "r" CR, "n" LF, anything else itself
 */

static ngx_int_t
ngx_mail_plus_dovecot_unescape(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p, *dst, *last;

    if (s->len == 0) {
        return NGX_OK;
    }

    dst = ngx_pnalloc(pool, s->len);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    p = s->data;
    last = s->data + s->len;
    s->data = dst;

    while (p < last) {

        if (*p != '\001' || p + 1 == last) {
            *dst++ = *p++;
            continue;
        }

        p++;

        switch (*p) {
        case '0':
            *dst++ = '\0';
            break;
        case '1':
            *dst++ = '\001';
            break;
        case 't':
            *dst++ = '\t';
            break;
        case 'r':
            *dst++ = '\r';
            break;
        case 'n':
            *dst++ = '\n';
            break;
        default:
            *dst++ = *p;
        }

        p++;
    }

    s->len = dst - s->data;

    return NGX_OK;
}
