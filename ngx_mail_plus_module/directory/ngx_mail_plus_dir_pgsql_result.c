
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_directory.h"
#include "ngx_mail_plus_dir_pgsql.h"


/*
 * The "pgsql" directory's query results: the rows of a user made into the
 * request's answer (its password hash, its extra fields by the columns'
 * names), errors of the query and of the data as temporary failures, and
 * libpq's or the server's texts cleaned for a log line.
 */


#if (NGX_MAIL_PLUS_PGSQL)

#define NGX_MAIL_PLUS_PGSQL_HASH_LEN   1024

#define NGX_MAIL_PLUS_PGSQL_BOOLOID    16


static void ngx_mail_plus_dir_pgsql_row(ngx_mail_plus_dir_req_t *req,
    PGresult *res);


/*
 * the query's result: the rows, or an error; an error of a lost
 * connection (class 08) or of a server going down (57P01-57P03) breaks
 * the connection
 */

void
ngx_mail_plus_dir_pgsql_result(ngx_mail_plus_dir_pgsql_conn_t *pc,
    PGresult *res)
{
    int                       n;
    size_t                    len;
    char                     *state, *text;
    ngx_str_t                 err;
    ngx_mail_plus_dir_req_t  *req;
    u_char                    buf[NGX_MAIL_PLUS_PGSQL_ERROR_LEN];

    req = pc->req;

    if (pc->answered) {
        return;
    }

    pc->answered = 1;

    switch (PQresultStatus(res)) {

    case PGRES_TUPLES_OK:

        n = PQntuples(res);

        if (n == 0) {
            req->result = NGX_MAIL_PLUS_DIR_UNKNOWN;
            return;
        }

        if (n > 1 && req->type == NGX_MAIL_PLUS_DIR_PASSDB) {
            len = ngx_snprintf(buf, sizeof(buf), "ambiguous: the query "
                               "returned %d rows", n) - buf;
            err.data = buf;
            err.len = len;

            ngx_log_error(NGX_LOG_ERR, req->log, 0,
                          "directory \"%V\" for \"%V\": %V",
                          &req->dir->name, &req->login, &err);

            ngx_mail_plus_dir_pgsql_answer(req, NGX_MAIL_PLUS_DIR_TEMPFAIL,
                                           &err);
            return;
        }

        ngx_mail_plus_dir_pgsql_row(req, res);
        return;

    case PGRES_FATAL_ERROR:
    case PGRES_NONFATAL_ERROR:
    case PGRES_BAD_RESPONSE:

        state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        text = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

        if (text == NULL) {
            text = PQresultErrorMessage(res);
        }

        if (state
            && ((state[0] == '0' && state[1] == '8')
                || ngx_strncmp(state, "57P0", 4) == 0))
        {
            ngx_mail_plus_dir_pgsql_set_error(pc->pgsql, text);
            pc->broken = 1;
            return;
        }

        len = ngx_snprintf(buf, sizeof(buf), "query failed: %s ",
                           state ? state : "") - buf;
        len += ngx_mail_plus_dir_pgsql_clean(buf + len, sizeof(buf) - len,
                                             text);
        err.data = buf;
        err.len = len;

        ngx_log_error(NGX_LOG_ERR, req->log, 0,
                      "directory \"%V\" for \"%V\": %V",
                      &req->dir->name, &req->login, &err);

        ngx_mail_plus_dir_pgsql_answer(req, NGX_MAIL_PLUS_DIR_TEMPFAIL, &err);
        return;

    default:
        ngx_str_set(&err, "the query returned no rows");
        ngx_mail_plus_dir_pgsql_answer(req, NGX_MAIL_PLUS_DIR_TEMPFAIL, &err);
        return;
    }
}


/*
 * the row of a user: "password" the hash, the other columns the fields;
 * a NULL is no field, a boolean is "y" or "n", a control character or a
 * value the field does not take is an error of the data
 */

static void
ngx_mail_plus_dir_pgsql_row(ngx_mail_plus_dir_req_t *req, PGresult *res)
{
    int         i, n;
    size_t      len;
    u_char     *p;
    ngx_str_t   name, value, err;
    u_char      buf[NGX_MAIL_PLUS_PGSQL_ERROR_LEN];

    n = PQnfields(res);

    for (i = 0; i < n; i++) {

        if (PQgetisnull(res, 0, i)) {
            continue;
        }

        name.data = (u_char *) PQfname(res, i);
        name.len = ngx_strlen(name.data);

        value.data = (u_char *) PQgetvalue(res, 0, i);
        value.len = PQgetlength(res, 0, i);

        if (PQftype(res, i) == NGX_MAIL_PLUS_PGSQL_BOOLOID && value.len == 1) {
            value.data = (u_char *) (value.data[0] == 't' ? "y" : "n");
        }

        if (name.len > 64 || ngx_mail_plus_text_has_ctl(&name)) {
            ngx_str_set(&err, "a column name that is too long or has a "
                              "control character");
            goto invalid;
        }

        if (ngx_mail_plus_text_has_ctl(&value)) {
            len = ngx_snprintf(buf, sizeof(buf), "the column \"%V\" has a "
                               "control character", &name) - buf;
            goto failed;
        }

        p = ngx_pnalloc(req->pool, value.len);
        if (p == NULL) {
            ngx_str_set(&err, "out of memory");
            goto invalid;
        }

        value.data = ngx_cpymem(p, value.data, value.len) - value.len;

        if (name.len == sizeof("password") - 1
            && ngx_strncasecmp(name.data, (u_char *) "password", name.len) == 0)
        {
            if (value.len > NGX_MAIL_PLUS_PGSQL_HASH_LEN) {
                ngx_str_set(&err, "the column \"password\" is too long");
                goto invalid;
            }

            if (req->type == NGX_MAIL_PLUS_DIR_PASSDB) {
                req->hash = value;
            }

            continue;
        }

        if (ngx_mail_plus_user_field(&req->fields, &name, &value) != NGX_OK) {
            len = ngx_snprintf(buf, sizeof(buf), "the column \"%V\" has a "
                               "value that is not valid", &name) - buf;
            goto failed;
        }
    }

    req->result = NGX_MAIL_PLUS_DIR_FOUND;

    return;

failed:

    err.data = buf;
    err.len = len;

invalid:

    ngx_log_error(NGX_LOG_ERR, req->log, 0,
                  "directory \"%V\" for \"%V\": %V",
                  &req->dir->name, &req->login, &err);

    ngx_mail_plus_dir_pgsql_answer(req, NGX_MAIL_PLUS_DIR_TEMPFAIL, &err);
}


/* an answer, with its error copied into the request's pool */

void
ngx_mail_plus_dir_pgsql_answer(ngx_mail_plus_dir_req_t *req,
    ngx_uint_t result, ngx_str_t *error)
{
    req->result = result;

    if (result != NGX_MAIL_PLUS_DIR_TEMPFAIL) {
        return;
    }

    req->hash.len = 0;
    ngx_memzero(&req->fields, sizeof(ngx_mail_plus_user_fields_t));

    req->error.data = ngx_pnalloc(req->pool, error->len);

    if (req->error.data == NULL) {
        ngx_str_set(&req->error, "out of memory");
        return;
    }

    req->error.len = error->len;
    ngx_memcpy(req->error.data, error->data, error->len);
}


/* the last connection's error, from libpq's text */

void
ngx_mail_plus_dir_pgsql_set_error(ngx_mail_plus_dir_pgsql_t *pgsql,
    const char *text)
{
    pgsql->error.len = ngx_mail_plus_dir_pgsql_clean(pgsql->error_buf,
                                                     sizeof(pgsql->error_buf),
                                                     text);

    if (pgsql->error.len == 0) {
        pgsql->error.len = ngx_cpymem(pgsql->error_buf, "unknown error",
                                      sizeof("unknown error") - 1)
                           - pgsql->error_buf;
    }
}


/*
 * libpq's or the server's text for a log line: its first line, other
 * control characters and runs of spaces as one space, none at either
 * end; cut to "size"
 */

size_t
ngx_mail_plus_dir_pgsql_clean(u_char *dst, size_t size, const char *text)
{
    u_char        *p, *last;
    const u_char  *s;

    p = dst;
    last = dst + size;

    for (s = (const u_char *) text; *s && *s != '\n' && p < last; s++) {

        if (*s > 0x20 && *s != 0x7f) {
            *p++ = *s;
            continue;
        }

        if (p > dst && p[-1] != ' ') {
            *p++ = ' ';
        }
    }

    while (p > dst && p[-1] == ' ') {
        p--;
    }

    return p - dst;
}

#endif
