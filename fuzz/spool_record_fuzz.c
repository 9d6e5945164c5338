
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * libFuzzer target for the reader of a queue file's records: the
 * envelope and the state file (a queue file can be corrupt, or written
 * by hand).  The input is a queue file, optionally followed by a line
 * "--state--" and a state file.  The first byte says how much of the
 * file the reader got (all of it, or a prefix: a read cut short or the
 * 64 MB cap).  Whatever the bytes, the reader either refuses the file
 * with a reason, or hands back an envelope whose every field lies inside
 * the buffer, whose addresses hold no space or control byte, with at
 * least one recipient and a content offset inside the file.
 *
 * sources: queue/ngx_mail_plus_spool_record.c
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_delivery.h"

#include <assert.h>
#include <stdlib.h>


#define FUZZ_ID  "6B15FD6780009FFFFF1009"


/* the nginx core functions the reader calls, beyond the shim's */

void *
ngx_array_push(ngx_array_t *a)
{
    void    *elt, *new;
    size_t   size;

    if (a->nelts == a->nalloc) {
        size = a->size * a->nalloc;

        new = ngx_palloc(a->pool, 2 * size);
        if (new == NULL) {
            return NULL;
        }

        ngx_memcpy(new, a->elts, size);
        a->elts = new;
        a->nalloc *= 2;
    }

    elt = (u_char *) a->elts + a->size * a->nelts;
    a->nelts++;

    return elt;
}


ngx_int_t
ngx_strncasecmp(u_char *s1, u_char *s2, size_t n)
{
    ngx_uint_t  c1, c2;

    while (n--) {
        c1 = ngx_tolower(*s1);
        c2 = ngx_tolower(*s2);
        s1++;
        s2++;

        if (c1 != c2) {
            return c1 - c2;
        }

        if (c1 == 0) {
            return 0;
        }
    }

    return 0;
}


/* as nginx's: s2 is n + 1 bytes long, its first byte compared first */

u_char *
ngx_strlcasestrn(u_char *s1, u_char *last, u_char *s2, size_t n)
{
    ngx_uint_t  c1, c2;

    c2 = (ngx_uint_t) *s2++;
    c2 = ngx_tolower(c2);
    last -= n;

    do {
        do {
            if (s1 >= last) {
                return NULL;
            }

            c1 = (ngx_uint_t) *s1++;
            c1 = ngx_tolower(c1);

        } while (c1 != c2);

    } while (ngx_strncasecmp(s1, s2, n) != 0);

    return --s1;
}


static void
fuzz_inside(ngx_str_t *s, u_char *buf, size_t len)
{
    if (s->len == 0) {
        return;
    }

    assert(s->data >= buf && s->data + s->len <= buf + len);
}


static void
fuzz_address(ngx_str_t *s, u_char *buf, size_t len)
{
    size_t  i;

    fuzz_inside(s, buf, len);

    for (i = 0; i < s->len; i++) {
        assert(s->data[i] > ' ' && s->data[i] != 0x7f);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                  *reason;
    u_char                *buf, *state, *sep;
    off_t                  fsize;
    size_t                 len, slen, got;
    ngx_int_t              rc;
    ngx_uint_t             i;
    ngx_pool_t            *pool;
    ngx_mail_plus_dmsg_t   msg;
    ngx_mail_plus_rcpt_t  *rcpt;

    if (size < 1) {
        return 0;
    }

    got = data[0];
    data++;
    size--;

    /* the file, and the state file after "--state--" */

    sep = ngx_strlcasestrn((u_char *) data, (u_char *) data + size,
                           (u_char *) "\n--state--\n", 10);

    len = sep ? (size_t) (sep + 1 - data) : size;
    slen = sep ? size - len - 10 : 0;

    /* copies of their own size, so that ASan sees every overread */

    buf = malloc(len ? len : 1);
    state = malloc(slen ? slen : 1);
    ngx_memcpy(buf, data, len);
    ngx_memcpy(state, sep ? sep + 11 : (u_char *) "", slen);

    /* the reader got all of the file, or a prefix of it */

    fsize = len;

    if (got & 1) {
        fsize += 1 + (got >> 1);
    }

    pool = ngx_create_pool(1024, NULL);
    assert(pool);

    ngx_memzero(&msg, sizeof(ngx_mail_plus_dmsg_t));
    msg.pool = pool;
    ngx_memcpy(msg.id, FUZZ_ID, NGX_MAIL_PLUS_QUEUE_ID_LEN);

    reason = NULL;

    rc = ngx_mail_plus_spool_envelope(&msg, buf, len, fsize, &reason);

    if (rc == NGX_DECLINED) {
        assert(reason != NULL);
        goto done;
    }

    assert(rc == NGX_OK);

    assert(msg.rcpts.nelts > 0);
    assert(msg.arrival > 0);
    assert(msg.body > 0 && msg.body <= (off_t) len);
    assert(msg.size == fsize - msg.body);

    fuzz_address(&msg.sender, buf, len);
    fuzz_inside(&msg.ret, buf, len);
    fuzz_inside(&msg.envid, buf, len);

    ngx_mail_plus_spool_state(&msg, slen ? state : NULL, slen);

    rcpt = msg.rcpts.elts;

    for (i = 0; i < msg.rcpts.nelts; i++) {
        assert(rcpt[i].addr.len > 0);
        fuzz_address(&rcpt[i].addr, buf, len);
        fuzz_inside(&rcpt[i].notify, buf, len);
        fuzz_inside(&rcpt[i].orcpt, buf, len);
        assert(rcpt[i].state == NGX_MAIL_PLUS_RCPT_PENDING
               || rcpt[i].state == NGX_MAIL_PLUS_RCPT_DONE);
    }

done:

    ngx_destroy_pool(pool);
    free(state);
    free(buf);

    return 0;
}
