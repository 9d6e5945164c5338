
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * libFuzzer target for the HTTP submission's query string: the input is
 * the query string; ngx_http_mail_plus_submit_query() reads it as the
 * submission does, and each address it yields goes through the SMTP
 * parser's path reader as "FROM:<...>" or "TO:<...>", as the submission
 * then sends it.
 *
 * Oracles: a decoded value holds no space and no control character, is
 * never longer than the query, and lies in memory of its own; an accepted
 * query has at least one recipient.
 *
 * sources: http/ngx_http_mail_plus_parse.c smtp/ngx_mail_plus_smtp_parse.c
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_http_mail_plus_parse.h"
#include "ngx_mail_plus_smtp.h"

#include <assert.h>
#include <stdlib.h>
#include <strings.h>


static void
fuzz_value(ngx_str_t *v, size_t max)
{
    size_t  i;

    assert(v->len <= max);

    for (i = 0; i < v->len; i++) {
        assert(v->data[i] > ' ' && v->data[i] != 0x7f);
    }
}


static void
fuzz_path(ngx_pool_t *pool, ngx_str_t *addr, ngx_uint_t rcpt)
{
    u_char                     *p;
    ngx_str_t                   arg;
    ngx_mail_plus_smtp_path_t   path;

    if (addr->len > NGX_MAIL_PLUS_SMTP_MAX_PATH) {
        return;
    }

    arg.data = ngx_pnalloc(pool, sizeof("FROM:<>") - 1 + addr->len);
    assert(arg.data != NULL);

    p = arg.data;
    p = ngx_cpymem(p, rcpt ? "TO:<" : "FROM:<", rcpt ? 4 : 6);
    p = ngx_cpymem(p, addr->data, addr->len);
    *p++ = '>';
    arg.len = p - arg.data;

    if (ngx_mail_plus_smtp_parse_path(&arg, rcpt, &path) == NGX_OK) {
        assert(path.addr.len <= addr->len);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                               *err;
    ngx_int_t                           rc;
    ngx_str_t                           args, *to;
    ngx_uint_t                          i;
    ngx_pool_t                         *pool;
    ngx_http_mail_plus_submit_query_t   q;

    pool = ngx_create_pool(1024, NULL);
    assert(pool != NULL);

    /* a copy of its own, so that ASan sees any read past the query */

    args.len = size;
    args.data = ngx_pnalloc(pool, size);
    assert(args.data != NULL);
    ngx_memcpy(args.data, data, size);

    err = NULL;
    rc = ngx_http_mail_plus_submit_query(&args, pool, &q, &err);

    if (rc == NGX_DECLINED) {
        assert(err != NULL);
    }

    if (rc == NGX_OK) {
        assert(q.to.nelts >= 1);

        to = q.to.elts;

        for (i = 0; i < q.to.nelts; i++) {
            fuzz_value(&to[i], size);
            fuzz_path(pool, &to[i], 1);
        }

        fuzz_value(&q.from, size);
        fuzz_value(&q.notify, size);
        fuzz_value(&q.ret, size);
        fuzz_value(&q.envid, size);

        if (q.has_from) {
            fuzz_path(pool, &q.from, 0);
        }
    }

    ngx_destroy_pool(pool);

    return 0;
}
