
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * The few nginx core functions that the module's parsers call, for the
 * fuzz targets, which link the module's sources but not nginx: Debian's
 * nginx-dev ships headers only.  A pool is a list of malloc() blocks freed
 * by ngx_destroy_pool(), so that AddressSanitizer sees every allocation on
 * its own and LeakSanitizer finds what a target forgot; logging is
 * discarded.  Nothing here is used by the module itself.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdlib.h>


volatile ngx_cycle_t  *ngx_cycle;
ngx_uint_t             ngx_pagesize = 4096;


ngx_pool_t *
ngx_create_pool(size_t size, ngx_log_t *log)
{
    ngx_pool_t  *pool;

    pool = calloc(1, sizeof(ngx_pool_t));
    if (pool == NULL) {
        return NULL;
    }

    pool->log = log;

    return pool;
}


void
ngx_destroy_pool(ngx_pool_t *pool)
{
    ngx_pool_large_t    *l, *next;
    ngx_pool_cleanup_t  *c;

    for (c = pool->cleanup; c; c = c->next) {
        if (c->handler) {
            c->handler(c->data);
        }
    }

    for (l = pool->large; l; l = next) {
        next = l->next;
        free(l->alloc);
        free(l);
    }

    free(pool);
}


void *
ngx_palloc(ngx_pool_t *pool, size_t size)
{
    ngx_pool_large_t  *l;

    l = malloc(sizeof(ngx_pool_large_t));
    if (l == NULL) {
        return NULL;
    }

    /* a zero-size request still gets a block of its own */

    l->alloc = malloc(size ? size : 1);
    if (l->alloc == NULL) {
        free(l);
        return NULL;
    }

    l->next = pool->large;
    pool->large = l;

    return l->alloc;
}


void *
ngx_pnalloc(ngx_pool_t *pool, size_t size)
{
    return ngx_palloc(pool, size);
}


void *
ngx_pcalloc(ngx_pool_t *pool, size_t size)
{
    void  *p;

    p = ngx_palloc(pool, size);
    if (p) {
        ngx_memzero(p, size);
    }

    return p;
}


ngx_pool_cleanup_t *
ngx_pool_cleanup_add(ngx_pool_t *p, size_t size)
{
    ngx_pool_cleanup_t  *c;

    c = ngx_palloc(p, sizeof(ngx_pool_cleanup_t));
    if (c == NULL) {
        return NULL;
    }

    c->data = size ? ngx_palloc(p, size) : NULL;
    c->handler = NULL;
    c->next = p->cleanup;
    p->cleanup = c;

    return c;
}


ngx_int_t
ngx_pfree(ngx_pool_t *pool, void *p)
{
    return NGX_DECLINED;
}


void
ngx_log_error_core(ngx_uint_t level, ngx_log_t *log, ngx_err_t err,
    const char *fmt, ...)
{
}


u_char *
ngx_pstrdup(ngx_pool_t *pool, ngx_str_t *src)
{
    u_char  *dst;

    dst = ngx_pnalloc(pool, src->len);
    if (dst == NULL) {
        return NULL;
    }

    ngx_memcpy(dst, src->data, src->len);

    return dst;
}


void
ngx_strlow(u_char *dst, u_char *src, size_t n)
{
    while (n) {
        *dst = ngx_tolower(*src);
        dst++;
        src++;
        n--;
    }
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


ngx_int_t
ngx_atoi(u_char *line, size_t n)
{
    ngx_int_t  value, cutoff, cutlim;

    if (n == 0) {
        return NGX_ERROR;
    }

    cutoff = NGX_MAX_INT_T_VALUE / 10;
    cutlim = NGX_MAX_INT_T_VALUE % 10;

    for (value = 0; n--; line++) {
        if (*line < '0' || *line > '9') {
            return NGX_ERROR;
        }

        if (value >= cutoff && (value > cutoff || *line - '0' > cutlim)) {
            return NGX_ERROR;
        }

        value = value * 10 + (*line - '0');
    }

    return value;
}


time_t
ngx_atotm(u_char *line, size_t n)
{
    time_t  value, cutoff, cutlim;

    if (n == 0) {
        return NGX_ERROR;
    }

    cutoff = NGX_MAX_TIME_T_VALUE / 10;
    cutlim = NGX_MAX_TIME_T_VALUE % 10;

    for (value = 0; n--; line++) {
        if (*line < '0' || *line > '9') {
            return NGX_ERROR;
        }

        if (value >= cutoff && (value > cutoff || *line - '0' > cutlim)) {
            return NGX_ERROR;
        }

        value = value * 10 + (*line - '0');
    }

    return value;
}


/*
 * RFC 4648 base64 and base64url, as ngx_decode_base64() and
 * ngx_decode_base64url() take them: no padding is needed
 */

static ngx_int_t ngx_fuzz_decode(ngx_str_t *dst, ngx_str_t *src,
    ngx_uint_t url);


static ngx_int_t
ngx_fuzz_base64_value(u_char ch, ngx_uint_t url)
{
    if (ch >= 'A' && ch <= 'Z') {
        return ch - 'A';
    }

    if (ch >= 'a' && ch <= 'z') {
        return ch - 'a' + 26;
    }

    if (ch >= '0' && ch <= '9') {
        return ch - '0' + 52;
    }

    if (ch == (url ? '-' : '+')) {
        return 62;
    }

    if (ch == (url ? '_' : '/')) {
        return 63;
    }

    return -1;
}


ngx_int_t
ngx_decode_base64(ngx_str_t *dst, ngx_str_t *src)
{
    return ngx_fuzz_decode(dst, src, 0);
}


ngx_int_t
ngx_decode_base64url(ngx_str_t *dst, ngx_str_t *src)
{
    return ngx_fuzz_decode(dst, src, 1);
}


static ngx_int_t
ngx_fuzz_decode(ngx_str_t *dst, ngx_str_t *src, ngx_uint_t url)
{
    u_char     *d;
    size_t      len, i;
    ngx_int_t   v[4];

    for (len = 0; len < src->len; len++) {
        if (src->data[len] == '=') {
            break;
        }

        if (ngx_fuzz_base64_value(src->data[len], url) < 0) {
            return NGX_ERROR;
        }
    }

    if (len % 4 == 1) {
        return NGX_ERROR;
    }

    d = dst->data;

    for (i = 0; i + 4 <= len; i += 4) {
        v[0] = ngx_fuzz_base64_value(src->data[i], url);
        v[1] = ngx_fuzz_base64_value(src->data[i + 1], url);
        v[2] = ngx_fuzz_base64_value(src->data[i + 2], url);
        v[3] = ngx_fuzz_base64_value(src->data[i + 3], url);

        *d++ = (u_char) (v[0] << 2 | v[1] >> 4);
        *d++ = (u_char) (v[1] << 4 | v[2] >> 2);
        *d++ = (u_char) (v[2] << 6 | v[3]);
    }

    if (len - i > 1) {
        v[0] = ngx_fuzz_base64_value(src->data[i], url);
        v[1] = ngx_fuzz_base64_value(src->data[i + 1], url);
        *d++ = (u_char) (v[0] << 2 | v[1] >> 4);

        if (len - i > 2) {
            v[2] = ngx_fuzz_base64_value(src->data[i + 2], url);
            *d++ = (u_char) (v[1] << 4 | v[2] >> 2);
        }
    }

    dst->len = d - dst->data;

    return NGX_OK;
}


ngx_array_t *
ngx_array_create(ngx_pool_t *p, ngx_uint_t n, size_t size)
{
    ngx_array_t  *a;

    a = ngx_palloc(p, sizeof(ngx_array_t));
    if (a == NULL) {
        return NULL;
    }

    a->elts = ngx_palloc(p, n * size);
    if (a->elts == NULL) {
        return NULL;
    }

    a->nelts = 0;
    a->size = size;
    a->nalloc = n;
    a->pool = p;

    return a;
}


/* an array grown by a new block of twice the size, the old one left to
   the pool */

void *
ngx_array_push(ngx_array_t *a)
{
    void  *elts;

    if (a->nelts == a->nalloc) {
        elts = ngx_palloc(a->pool, 2 * (a->nalloc ? a->nalloc : 1) * a->size);
        if (elts == NULL) {
            return NULL;
        }

        if (a->nelts) {
            ngx_memcpy(elts, a->elts, a->nelts * a->size);
        }

        a->elts = elts;
        a->nalloc = 2 * (a->nalloc ? a->nalloc : 1);
    }

    return (u_char *) a->elts + a->size * a->nelts++;
}


ngx_int_t
ngx_hextoi(u_char *line, size_t n)
{
    u_char     c;
    ngx_int_t  value;

    if (n == 0) {
        return NGX_ERROR;
    }

    for (value = 0; n--; line++) {
        c = *line;

        if (c >= '0' && c <= '9') {
            value = value * 16 + (c - '0');

        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            value = value * 16 + ((c | 0x20) - 'a' + 10);

        } else {
            return NGX_ERROR;
        }

        if (value > NGX_MAX_INT_T_VALUE / 16) {
            return NGX_ERROR;
        }
    }

    return value;
}


/*
 * one UTF-8 character, as nginx's decoder answers: the code point, or
 * 0xffffffff (not UTF-8: a stray or bad byte, an overlong form) or
 * 0xfffffffe (cut short); *p past the bytes read
 */

uint32_t
ngx_utf8_decode(u_char **p, size_t n)
{
    size_t    len, i;
    uint32_t  u, min;
    u_char    c;

    c = *(*p)++;

    if (c < 0x80) {
        return c;
    }

    if (c >= 0xf0 && c < 0xf8) {
        len = 4;
        u = c & 0x07;
        min = 0x10000;

    } else if (c >= 0xe0 && c < 0xf0) {
        len = 3;
        u = c & 0x0f;
        min = 0x800;

    } else if (c >= 0xc0 && c < 0xe0) {
        len = 2;
        u = c & 0x1f;
        min = 0x80;

    } else {
        return 0xffffffff;
    }

    if (n < len) {
        return 0xfffffffe;
    }

    for (i = 1; i < len; i++) {
        c = *(*p)++;

        if ((c & 0xc0) != 0x80) {
            return 0xffffffff;
        }

        u = (u << 6) | (c & 0x3f);
    }

    return (u >= min) ? u : 0xffffffff;
}


/* by libc, in the form nginx gives: months 1-12, years in full */

void
ngx_gmtime(time_t t, ngx_tm_t *tp)
{
    struct tm  tm;

    gmtime_r(&t, &tm);

    tp->ngx_tm_sec = tm.tm_sec;
    tp->ngx_tm_min = tm.tm_min;
    tp->ngx_tm_hour = tm.tm_hour;
    tp->ngx_tm_mday = tm.tm_mday;
    tp->ngx_tm_mon = tm.tm_mon + 1;
    tp->ngx_tm_year = tm.tm_year + 1900;
    tp->ngx_tm_wday = tm.tm_wday;
}
