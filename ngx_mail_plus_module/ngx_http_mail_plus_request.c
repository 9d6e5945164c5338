
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_mail.h>
#include "ngx_http_mail_plus.h"


/*
 * What the HTTP modules (auth_http, submission) share: a login check of
 * the router on behalf of a request, and a header of the answer.
 */


typedef struct {
    ngx_http_request_t             *request;
    ngx_http_mail_plus_checked_pt   handler;
} ngx_http_mail_plus_check_ctx_t;


static void ngx_http_mail_plus_checked(ngx_mail_plus_check_t *check);


/*
 * the check is started; the handler gets the request when the router has
 * answered, and its result finalizes the request; NGX_DONE while a thread
 * checks the password
 */

ngx_int_t
ngx_http_mail_plus_check(ngx_http_request_t *r, ngx_mail_plus_check_t *check,
    ngx_http_mail_plus_checked_pt handler)
{
    ngx_int_t                        rc;
    ngx_http_mail_plus_check_ctx_t  *cc;

    cc = ngx_palloc(r->pool, sizeof(ngx_http_mail_plus_check_ctx_t));
    if (cc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cc->request = r;
    cc->handler = handler;

    check->handler = ngx_http_mail_plus_checked;
    check->data = cc;

    rc = ngx_mail_plus_check_start(check);

    if (rc == NGX_AGAIN) {
        r->main->blocked++;
        r->main->count++;
        r->aio = 1;
        return NGX_DONE;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return handler(r);
}


static void
ngx_http_mail_plus_checked(ngx_mail_plus_check_t *check)
{
    ngx_connection_t                *c;
    ngx_http_request_t              *r;
    ngx_http_mail_plus_check_ctx_t  *cc;

    cc = check->data;
    r = cc->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    r->main->blocked--;
    r->aio = 0;

    ngx_http_finalize_request(r, cc->handler(r));
    ngx_http_run_posted_requests(c);
}


ngx_int_t
ngx_http_mail_plus_header(ngx_http_request_t *r, char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}
