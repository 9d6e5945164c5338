
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_http_mail_plus_jmap.h"
#include "ngx_http_mail_plus_jmap_email.h"
#include "ngx_http_mail_plus_jmap_mime.h"


/*
 * Email/query (RFC 8621, section 4.4): the filter made IMAP SEARCH keys
 * (a client's strings sent as IMAP strings, never spliced), run as
 * "UID SORT (ARRIVAL) UTF-8 <keys>" in each mailbox searched (EXAMINE
 * first), the only sort being receivedAt.  A filter with inMailbox at its
 * top searches that mailbox; any other searches every selectable mailbox
 * in turn (inMailbox and inMailboxOtherThan are then true or false in
 * each) and then asks the INTERNALDATE of every hit, to merge them.  A
 * thread is one message, so the *InThread* conditions are hasKeyword and
 * notKeyword, and collapseThreads changes nothing.  before and after are
 * whole days in SEARCH; at the top of the filter they are made exact
 * with the INTERNALDATE.
 */


#define NGX_HTTP_MAIL_PLUS_JMAP_FILTER_DEPTH       8
#define NGX_HTTP_MAIL_PLUS_JMAP_FILTER_CONDITIONS  64


typedef struct {
    uint64_t                            uid;
    uint64_t                            uidvalidity;
    time_t                              time;
    ngx_http_mail_plus_jmap_mailbox_t  *mailbox;
} ngx_http_mail_plus_jmap_hit_t;


typedef struct {
    ngx_http_mail_plus_jmap_call_t     *call;
    ngx_pool_t                         *pool;
    json_t                             *filter;
    ngx_http_mail_plus_jmap_mailbox_t  *mailbox;   /* searched now */
    ngx_http_mail_plus_jmap_mailbox_t  *only;      /* top inMailbox */
    ngx_uint_t                          next;      /* in ctx->mailboxes */
    ngx_uint_t                          first;     /* its first hit */
    ngx_array_t                         hits;
    ngx_uint_t                          conditions;
    ngx_int_t                           position;
    json_t                             *anchor;
    ngx_int_t                           anchor_offset;
    ngx_uint_t                          limit;
    time_t                              before;    /* 0: none */
    time_t                              after;
    unsigned                            ascending:1;
    unsigned                            total:1;
    unsigned                            capped:1;
    unsigned                            dates:1;   /* INTERNALDATE asked */
} ngx_http_mail_plus_jmap_query_t;


/*
 * The last single-mailbox SORT of a session, kept with it (imap->kept)
 * for the next request of a listing page by page: the same filter in the
 * same mailbox gives the same UIDs while the mailbox's UIDVALIDITY,
 * UIDNEXT, HIGHESTMODSEQ and count are what this request's list found
 * (with CONDSTORE any new, changed or expunged message raises
 * HIGHESTMODSEQ; without it nothing is kept).  The block holds the
 * filter's JSON text, then the UIDs.
 */

typedef struct {
    ngx_http_mail_plus_jmap_mbstate_t   mailbox;
    size_t                              filter_len;
    ngx_uint_t                          nuids;
} ngx_http_mail_plus_jmap_sorted_t;


static ngx_int_t ngx_http_mail_plus_jmap_query_args(
    ngx_http_mail_plus_jmap_query_t *q);
static ngx_int_t ngx_http_mail_plus_jmap_query_sort(
    ngx_http_mail_plus_jmap_query_t *q, json_t *sort);
static ngx_int_t ngx_http_mail_plus_jmap_filter(
    ngx_http_mail_plus_jmap_query_t *q, ngx_mail_plus_imap_cmd_t *cmd,
    json_t *f, ngx_uint_t depth);
static ngx_int_t ngx_http_mail_plus_jmap_condition(
    ngx_http_mail_plus_jmap_query_t *q, ngx_mail_plus_imap_cmd_t *cmd,
    json_t *f);
static ngx_int_t ngx_http_mail_plus_jmap_key(ngx_http_mail_plus_jmap_query_t *q,
    ngx_mail_plus_imap_cmd_t *cmd, const char *name, json_t *v);
static ngx_int_t ngx_http_mail_plus_jmap_keyword_key(
    ngx_http_mail_plus_jmap_query_t *q, ngx_mail_plus_imap_cmd_t *cmd,
    ngx_uint_t in, json_t *v);
static ngx_int_t ngx_http_mail_plus_jmap_header_key(
    ngx_http_mail_plus_jmap_query_t *q, ngx_mail_plus_imap_cmd_t *cmd,
    json_t *v);
static ngx_int_t ngx_http_mail_plus_jmap_text(ngx_mail_plus_imap_cmd_t *cmd,
    const char *text);
static ngx_int_t ngx_http_mail_plus_jmap_qstring(
    ngx_mail_plus_imap_cmd_t *cmd, json_t *v);
static ngx_int_t ngx_http_mail_plus_jmap_utcdate(json_t *v, time_t *t);
static void ngx_http_mail_plus_jmap_query_top(
    ngx_http_mail_plus_jmap_query_t *q);
static void ngx_http_mail_plus_jmap_query_mailboxes(
    ngx_http_mail_plus_jmap_call_t *call);
static ngx_int_t ngx_http_mail_plus_jmap_query_next(
    ngx_http_mail_plus_jmap_query_t *q);
static void ngx_http_mail_plus_jmap_query_examined(
    ngx_mail_plus_imap_cmd_t *cmd);
static void ngx_http_mail_plus_jmap_query_sorted(
    ngx_mail_plus_imap_cmd_t *cmd);
static void ngx_http_mail_plus_jmap_query_dated(
    ngx_mail_plus_imap_cmd_t *cmd);
static void ngx_http_mail_plus_jmap_query_continue(
    ngx_http_mail_plus_jmap_query_t *q);
static int ngx_libc_cdecl ngx_http_mail_plus_jmap_hit_cmp(const void *one,
    const void *two);
static ngx_int_t ngx_http_mail_plus_jmap_query_answer(
    ngx_http_mail_plus_jmap_query_t *q);
static ngx_int_t ngx_http_mail_plus_jmap_sorted_text(
    ngx_http_mail_plus_jmap_query_t *q, ngx_str_t *text);
static ngx_int_t ngx_http_mail_plus_jmap_sorted_find(
    ngx_http_mail_plus_jmap_query_t *q, ngx_mail_plus_imap_t *imap);
static void ngx_http_mail_plus_jmap_sorted_keep(
    ngx_http_mail_plus_jmap_query_t *q, ngx_mail_plus_imap_t *imap);


ngx_int_t
ngx_http_mail_plus_jmap_email_query(ngx_http_mail_plus_jmap_call_t *call)
{
    ngx_int_t                         rc;
    ngx_http_mail_plus_jmap_query_t  *q;

    if (ngx_http_mail_plus_jmap_account(call) != NGX_OK) {
        return NGX_OK;
    }

    q = ngx_pcalloc(call->request->pool,
                    sizeof(ngx_http_mail_plus_jmap_query_t));
    if (q == NULL) {
        return NGX_ERROR;
    }

    q->call = call;
    q->pool = call->request->pool;
    call->data = q;

    if (ngx_array_init(&q->hits, q->pool, 64,
                       sizeof(ngx_http_mail_plus_jmap_hit_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_mail_plus_jmap_query_args(q);
    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : NGX_ERROR;
    }

    /* the filter checked whole before any IMAP */

    rc = ngx_http_mail_plus_jmap_filter(q, NULL, q->filter, 0);
    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : NGX_ERROR;
    }

    rc = ngx_http_mail_plus_jmap_mailboxes(call,
                                   ngx_http_mail_plus_jmap_query_mailboxes);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_http_mail_plus_jmap_query_top(q);

    return ngx_http_mail_plus_jmap_query_next(q);
}


static ngx_int_t
ngx_http_mail_plus_jmap_query_args(ngx_http_mail_plus_jmap_query_t *q)
{
    json_t                              *v, *args;
    json_int_t                           n;
    ngx_http_mail_plus_jmap_loc_conf_t  *lc;

    args = q->call->args;
    lc = ngx_http_get_module_loc_conf(q->call->request,
                                      ngx_http_mail_plus_jmap_module);

    q->filter = json_object_get(args, "filter");
    if (json_is_null(q->filter)) {
        q->filter = NULL;
    }

    if (ngx_http_mail_plus_jmap_query_sort(q, json_object_get(args, "sort"))
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    v = json_object_get(args, "position");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v)
            || json_integer_value(v) > (json_int_t) NGX_MAX_INT32_VALUE
            || json_integer_value(v) < -(json_int_t) NGX_MAX_INT32_VALUE)
        {
            goto invalid;
        }
        q->position = (ngx_int_t) json_integer_value(v);
    }

    v = json_object_get(args, "anchor");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) {
            goto invalid;
        }
        q->anchor = v;
    }

    v = json_object_get(args, "anchorOffset");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v)
            || json_integer_value(v) > (json_int_t) NGX_MAX_INT32_VALUE
            || json_integer_value(v) < -(json_int_t) NGX_MAX_INT32_VALUE)
        {
            goto invalid;
        }
        q->anchor_offset = (ngx_int_t) json_integer_value(v);
    }

    q->limit = lc->max_query_limit;

    v = json_object_get(args, "limit");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            goto invalid;
        }

        n = json_integer_value(v);

        if ((json_int_t) lc->max_query_limit < n) {
            q->capped = 1;

        } else {
            q->limit = (ngx_uint_t) n;
        }
    }

    v = json_object_get(args, "calculateTotal");
    if (v && !json_is_boolean(v)) {
        goto invalid;
    }
    q->total = json_is_true(v);

    v = json_object_get(args, "collapseThreads");
    if (v && !json_is_boolean(v) && !json_is_null(v)) {
        goto invalid;
    }

    return NGX_OK;

invalid:

    q->call->error = "invalidArguments";
    q->call->description = "position, anchor, anchorOffset, limit, "
                           "calculateTotal or collapseThreads";

    return NGX_DECLINED;
}


/* receivedAt only */

static ngx_int_t
ngx_http_mail_plus_jmap_query_sort(ngx_http_mail_plus_jmap_query_t *q,
    json_t *sort)
{
    json_t  *c, *p, *a;
    size_t   i;

    q->ascending = 0;

    if (sort == NULL || json_is_null(sort)) {
        return NGX_OK;
    }

    if (!json_is_array(sort) || json_array_size(sort) > 16) {
        goto invalid;
    }

    json_array_foreach(sort, i, c) {
        p = json_object_get(c, "property");
        a = json_object_get(c, "isAscending");

        if (!json_is_object(c) || !json_is_string(p)
            || (a && !json_is_boolean(a)))
        {
            goto invalid;
        }

        if (ngx_strcmp(json_string_value(p), "receivedAt") != 0) {
            q->call->error = "unsupportedSort";
            q->call->description = "only receivedAt is sorted on";
            return NGX_DECLINED;
        }

        if (i == 0) {
            q->ascending = json_is_true(a);
        }
    }

    return NGX_OK;

invalid:

    q->call->error = "invalidArguments";
    q->call->description = "sort: not an array of comparators";

    return NGX_DECLINED;
}


/*
 * a filter: checked (cmd NULL) or written as one search key; NGX_DECLINED
 * with call->error set for a filter refused
 */

static ngx_int_t
ngx_http_mail_plus_jmap_filter(ngx_http_mail_plus_jmap_query_t *q,
    ngx_mail_plus_imap_cmd_t *cmd, json_t *f, ngx_uint_t depth)
{
    json_t      *op, *conds, *c;
    size_t       i, n;
    ngx_int_t    rc;
    const char  *o;

    if (f == NULL) {
        return ngx_http_mail_plus_jmap_text(cmd, "ALL");
    }

    if (!json_is_object(f)) {
        goto invalid;
    }

    if (depth > NGX_HTTP_MAIL_PLUS_JMAP_FILTER_DEPTH
        || ++q->conditions > NGX_HTTP_MAIL_PLUS_JMAP_FILTER_CONDITIONS)
    {
        q->call->error = "unsupportedFilter";
        q->call->description = "filter: nested too deep or too many "
                               "conditions";
        return NGX_DECLINED;
    }

    op = json_object_get(f, "operator");

    if (op == NULL) {
        return ngx_http_mail_plus_jmap_condition(q, cmd, f);
    }

    conds = json_object_get(f, "conditions");
    o = json_string_value(op);

    if (o == NULL || !json_is_array(conds) || json_object_size(f) != 2) {
        goto invalid;
    }

    n = json_array_size(conds);

    if (ngx_strcmp(o, "AND") == 0) {
        if (n == 0) {
            return ngx_http_mail_plus_jmap_text(cmd, "ALL");
        }

        if (ngx_http_mail_plus_jmap_text(cmd, "(") != NGX_OK) {
            return NGX_ERROR;
        }

        json_array_foreach(conds, i, c) {
            if (i && ngx_http_mail_plus_jmap_text(cmd, " ") != NGX_OK) {
                return NGX_ERROR;
            }

            rc = ngx_http_mail_plus_jmap_filter(q, cmd, c, depth + 1);
            if (rc != NGX_OK) {
                return rc;
            }
        }

        return ngx_http_mail_plus_jmap_text(cmd, ")");
    }

    if (ngx_strcmp(o, "OR") != 0 && ngx_strcmp(o, "NOT") != 0) {
        goto invalid;
    }

    if (o[0] == 'N'
        && ngx_http_mail_plus_jmap_text(cmd, "NOT ") != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (n == 0) {
        return ngx_http_mail_plus_jmap_text(cmd, "NOT ALL");
    }

    /* "OR a OR b c" */

    json_array_foreach(conds, i, c) {
        if (i + 1 < n && ngx_http_mail_plus_jmap_text(cmd, "OR ") != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_http_mail_plus_jmap_filter(q, cmd, c, depth + 1);
        if (rc != NGX_OK) {
            return rc;
        }

        if (i + 1 < n && ngx_http_mail_plus_jmap_text(cmd, " ") != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;

invalid:

    q->call->error = "invalidArguments";
    q->call->description = "filter: not a FilterOperator or FilterCondition";

    return NGX_DECLINED;
}


/* a FilterCondition: its properties ANDed, "(k1 k2)" */

static ngx_int_t
ngx_http_mail_plus_jmap_condition(ngx_http_mail_plus_jmap_query_t *q,
    ngx_mail_plus_imap_cmd_t *cmd, json_t *f)
{
    json_t      *v;
    ngx_int_t    rc;
    ngx_uint_t   first;
    const char  *name;

    if (json_object_size(f) == 0) {
        return ngx_http_mail_plus_jmap_text(cmd, "ALL");
    }

    if (ngx_http_mail_plus_jmap_text(cmd, "(") != NGX_OK) {
        return NGX_ERROR;
    }

    first = 1;

    json_object_foreach(f, name, v) {
        if (!first && ngx_http_mail_plus_jmap_text(cmd, " ") != NGX_OK) {
            return NGX_ERROR;
        }

        first = 0;

        rc = ngx_http_mail_plus_jmap_key(q, cmd, name, v);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    return ngx_http_mail_plus_jmap_text(cmd, ")");
}


static ngx_int_t
ngx_http_mail_plus_jmap_key(ngx_http_mail_plus_jmap_query_t *q,
    ngx_mail_plus_imap_cmd_t *cmd, const char *name, json_t *v)
{
    u_char              buf[64];
    json_t             *e;
    size_t              i;
    time_t              t;
    ngx_tm_t            tm;
    json_int_t          n;
    ngx_uint_t          k, in;
    static const char  *months[] = { "Jan", "Feb", "Mar", "Apr", "May",
                                     "Jun", "Jul", "Aug", "Sep", "Oct",
                                     "Nov", "Dec" };
    static const char  *texts[][2] = {
        { "text", "TEXT " }, { "from", "FROM " }, { "to", "TO " },
        { "cc", "CC " }, { "bcc", "BCC " }, { "subject", "SUBJECT " },
        { "body", "BODY " }, { NULL, NULL }
    };

    for (k = 0; texts[k][0]; k++) {
        if (ngx_strcmp(name, texts[k][0]) == 0) {
            if (!json_is_string(v)) {
                goto invalid;
            }

            if (ngx_http_mail_plus_jmap_text(cmd, texts[k][1]) != NGX_OK) {
                return NGX_ERROR;
            }

            return ngx_http_mail_plus_jmap_qstring(cmd, v);
        }
    }

    if (ngx_strcmp(name, "inMailbox") == 0) {
        if (!json_is_string(v)) {
            goto invalid;
        }

        in = (q->mailbox
              && json_string_length(v) == 17
              && ngx_strncmp(q->mailbox->id, json_string_value(v), 17) == 0);

        return ngx_http_mail_plus_jmap_text(cmd, in ? "ALL" : "NOT ALL");
    }

    if (ngx_strcmp(name, "inMailboxOtherThan") == 0) {
        if (!json_is_array(v)) {
            goto invalid;
        }

        in = 1;

        json_array_foreach(v, i, e) {
            if (!json_is_string(e)) {
                goto invalid;
            }

            if (q->mailbox && json_string_length(e) == 17
                && ngx_strncmp(q->mailbox->id, json_string_value(e), 17)
                   == 0)
            {
                in = 0;
            }
        }

        return ngx_http_mail_plus_jmap_text(cmd, in ? "ALL" : "NOT ALL");
    }

    if (ngx_strcmp(name, "before") == 0 || ngx_strcmp(name, "after") == 0) {
        if (ngx_http_mail_plus_jmap_utcdate(v, &t) != NGX_OK) {
            goto invalid;
        }

        /* whole days, a day wider each way: made exact at the top */

        if (name[0] == 'b') {
            ngx_gmtime(t + 2 * 86400, &tm);

        } else {
            ngx_gmtime(t > 86400 ? t - 86400 : 0, &tm);
        }

        ngx_sprintf(buf, "%s %d-%s-%d%Z", name[0] == 'b' ? "BEFORE" : "SINCE",
                    tm.ngx_tm_mday, months[tm.ngx_tm_mon - 1],
                    tm.ngx_tm_year);

        return ngx_http_mail_plus_jmap_text(cmd, (char *) buf);
    }

    if (ngx_strcmp(name, "minSize") == 0 || ngx_strcmp(name, "maxSize") == 0)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0
            || json_integer_value(v) > (json_int_t) NGX_MAX_UINT32_VALUE)
        {
            goto invalid;
        }

        n = json_integer_value(v);

        if (name[1] == 'i') {
            if (n == 0) {
                return ngx_http_mail_plus_jmap_text(cmd, "ALL");
            }

            ngx_sprintf(buf, "LARGER %L%Z", (int64_t) (n - 1));

        } else {
            ngx_sprintf(buf, "SMALLER %L%Z", (int64_t) n);
        }

        return ngx_http_mail_plus_jmap_text(cmd, (char *) buf);
    }

    if (ngx_strcmp(name, "hasKeyword") == 0
        || ngx_strcmp(name, "notKeyword") == 0
        || ngx_strcmp(name, "allInThreadHaveKeyword") == 0
        || ngx_strcmp(name, "someInThreadHaveKeyword") == 0
        || ngx_strcmp(name, "noneInThreadHaveKeyword") == 0)
    {
        return ngx_http_mail_plus_jmap_keyword_key(q, cmd, name[0] != 'n', v);
    }

    if (ngx_strcmp(name, "header") == 0) {
        return ngx_http_mail_plus_jmap_header_key(q, cmd, v);
    }

    q->call->error = "unsupportedFilter";
    q->call->description = "filter: a condition not supported "
                           "(hasAttachment, or unknown)";

    return NGX_DECLINED;

invalid:

    q->call->error = "invalidArguments";
    q->call->description = "filter: a condition's value";

    return NGX_DECLINED;
}


/* hasKeyword and the like (in) or notKeyword and the like: the system
   flags by their own keys, others as KEYWORD atoms (checked) */

static ngx_int_t
ngx_http_mail_plus_jmap_keyword_key(ngx_http_mail_plus_jmap_query_t *q,
    ngx_mail_plus_imap_cmd_t *cmd, ngx_uint_t in, json_t *v)
{
    ngx_uint_t          k;
    const char         *s;
    static const char  *system[][3] = {
        { "$seen", "SEEN", "UNSEEN" },
        { "$flagged", "FLAGGED", "UNFLAGGED" },
        { "$answered", "ANSWERED", "UNANSWERED" },
        { "$draft", "DRAFT", "UNDRAFT" },
        { NULL, NULL, NULL }
    };

    s = json_string_value(v);

    if (s == NULL || ngx_http_mail_plus_jmap_keyword(s) != NGX_OK
        || ngx_strcasecmp((u_char *) s, (u_char *) "$recent") == 0)
    {
        q->call->error = "invalidArguments";
        q->call->description = "filter: not a keyword";
        return NGX_DECLINED;
    }

    for (k = 0; system[k][0]; k++) {
        if (ngx_strcasecmp((u_char *) s, (u_char *) system[k][0]) == 0) {
            return ngx_http_mail_plus_jmap_text(cmd, system[k][in ? 1 : 2]);
        }
    }

    if (ngx_http_mail_plus_jmap_text(cmd, in ? "KEYWORD " : "UNKEYWORD ")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_mail_plus_jmap_text(cmd, s);
}


/* header: [name] (the field is there) or [name, value] (it holds value) */

static ngx_int_t
ngx_http_mail_plus_jmap_header_key(ngx_http_mail_plus_jmap_query_t *q,
    ngx_mail_plus_imap_cmd_t *cmd, json_t *v)
{
    json_t      *e;
    size_t       i;
    const char  *s;

    s = json_string_value(json_array_get(v, 0));
    e = json_array_get(v, 1);

    if (!json_is_array(v) || json_array_size(v) < 1
        || json_array_size(v) > 2 || s == NULL || *s == '\0'
        || ngx_strlen(s) > 128 || (e && !json_is_string(e)))
    {
        goto invalid;
    }

    for (i = 0; s[i]; i++) {
        if (s[i] <= ' ' || s[i] >= 0x7f || s[i] == ':') {
            goto invalid;
        }
    }

    if (ngx_http_mail_plus_jmap_text(cmd, "HEADER ") != NGX_OK
        || ngx_http_mail_plus_jmap_qstring(cmd, json_array_get(v, 0))
           != NGX_OK
        || ngx_http_mail_plus_jmap_text(cmd, " ") != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (e) {
        return ngx_http_mail_plus_jmap_qstring(cmd, e);
    }

    return ngx_http_mail_plus_jmap_text(cmd, "\"\"");

invalid:

    q->call->error = "invalidArguments";
    q->call->description = "filter: header";

    return NGX_DECLINED;
}


/* text as it is, or nothing while checking */

static ngx_int_t
ngx_http_mail_plus_jmap_text(ngx_mail_plus_imap_cmd_t *cmd, const char *text)
{
    if (cmd == NULL) {
        return NGX_OK;
    }

    return ngx_mail_plus_imap_cmd_text(cmd, "%s", text);
}


static ngx_int_t
ngx_http_mail_plus_jmap_qstring(ngx_mail_plus_imap_cmd_t *cmd, json_t *v)
{
    ngx_str_t  s;

    if (cmd == NULL) {
        return NGX_OK;
    }

    s.data = (u_char *) json_string_value(v);
    s.len = json_string_length(v);

    return ngx_mail_plus_imap_cmd_string(cmd, &s) == NGX_OK ? NGX_OK
                                                            : NGX_ERROR;
}


/* a UTCDate: "2014-10-30T06:12:00Z" (fractions allowed) */

static ngx_int_t
ngx_http_mail_plus_jmap_utcdate(json_t *v, time_t *t)
{
    int          y, mo, d, h, mi, s;
    const char  *p;
    ngx_int_t    days;

    p = json_string_value(v);

    if (p == NULL || ngx_strlen(p) < 20 || ngx_strlen(p) > 40
        || sscanf(p, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &s)
           != 6
        || p[4] != '-' || p[7] != '-' || p[10] != 'T' || p[13] != ':'
        || p[16] != ':' || p[ngx_strlen(p) - 1] != 'Z')
    {
        return NGX_ERROR;
    }

    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31
        || h > 23 || mi > 59 || s > 60)
    {
        return NGX_ERROR;
    }

    if (mo <= 2) {
        y--;
        mo += 12;
    }

    days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * (mo - 3) + 2) / 5
           + d - 1 - 719468;

    *t = (time_t) days * 86400 + h * 3600 + mi * 60 + s;

    return NGX_OK;
}


/* the top of the filter: one mailbox, and exact before and after */

static void
ngx_http_mail_plus_jmap_query_top(ngx_http_mail_plus_jmap_query_t *q)
{
    json_t                             *f, *c, *v, *list;
    size_t                              i, n;
    time_t                              t;
    ngx_uint_t                          k;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    f = q->filter;
    if (f == NULL) {
        return;
    }

    list = NULL;
    n = 1;

    if (json_object_get(f, "operator")) {
        if (ngx_strcmp(json_string_value(json_object_get(f, "operator")),
                       "AND")
            != 0)
        {
            return;
        }

        list = json_object_get(f, "conditions");
        n = json_array_size(list);
    }

    for (i = 0; i < n; i++) {
        c = list ? json_array_get(list, i) : f;

        if (json_object_get(c, "operator")) {
            continue;
        }

        v = json_object_get(c, "inMailbox");

        if (v && q->only == NULL) {
            mb = q->call->ctx->mailboxes->elts;

            for (k = 0; k < q->call->ctx->mailboxes->nelts; k++) {
                if (json_string_length(v) == 17
                    && ngx_strncmp(mb[k].id, json_string_value(v), 17) == 0)
                {
                    q->only = &mb[k];
                }
            }

            if (q->only == NULL) {
                q->only = (void *) -1;          /* none: no hits */
            }
        }

        v = json_object_get(c, "before");

        if (v && ngx_http_mail_plus_jmap_utcdate(v, &t) == NGX_OK
            && (q->before == 0 || t < q->before))
        {
            q->before = t;
        }

        v = json_object_get(c, "after");

        if (v && ngx_http_mail_plus_jmap_utcdate(v, &t) == NGX_OK
            && t > q->after)
        {
            q->after = t;
        }
    }
}


static void
ngx_http_mail_plus_jmap_query_mailboxes(ngx_http_mail_plus_jmap_call_t *call)
{
    ngx_int_t                         rc;
    ngx_http_mail_plus_jmap_query_t  *q;

    q = call->data;

    if (call->ctx->mailboxes == NULL) {
        if (call->error == NULL) {
            call->error = "serverFail";
        }

        ngx_http_mail_plus_jmap_done(call);
        return;
    }

    ngx_http_mail_plus_jmap_query_top(q);

    rc = ngx_http_mail_plus_jmap_query_next(q);

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc == NGX_ERROR) {
        call->error = "serverFail";
    }

    ngx_http_mail_plus_jmap_done(call);
}


/* the next mailbox to search: EXAMINE and UID SORT; NGX_OK when all are
   searched (the answer is set) */

static ngx_int_t
ngx_http_mail_plus_jmap_query_next(ngx_http_mail_plus_jmap_query_t *q)
{
    ngx_int_t                           rc;
    ngx_mail_plus_imap_t               *imap;
    ngx_mail_plus_imap_cmd_t           *cmd;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    mb = q->call->ctx->mailboxes->elts;

    for ( ;; ) {
        if (q->only == (void *) -1
            || q->next >= q->call->ctx->mailboxes->nelts)
        {
            return ngx_http_mail_plus_jmap_query_answer(q);
        }

        q->mailbox = &mb[q->next++];

        if (q->mailbox->noselect || (q->only && q->only != q->mailbox)) {
            continue;
        }

        break;
    }

    q->dates = (q->only == NULL || q->before || q->after);
    q->first = q->hits.nelts;

    imap = ngx_http_mail_plus_jmap_imap(q->call->ctx);
    if (imap == NULL) {
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, q->call->request->connection->log, 0,
                   "http jmap email: query in \"%*s\"", (size_t) 17,
                   q->mailbox->id);

    rc = ngx_http_mail_plus_jmap_sorted_find(q, imap);

    if (rc == NGX_OK) {
        return ngx_http_mail_plus_jmap_query_next(q);
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (imap->selected.len != q->mailbox->path.len
        || ngx_strncmp(imap->selected.data, q->mailbox->path.data,
                       q->mailbox->path.len)
           != 0)
    {
        cmd = ngx_mail_plus_imap_cmd(imap, q->pool);
        if (cmd == NULL
            || ngx_mail_plus_imap_cmd_text(cmd, "EXAMINE ") != NGX_OK
            || ngx_mail_plus_imap_cmd_mailbox(cmd, &q->mailbox->path)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        cmd->handler = ngx_http_mail_plus_jmap_query_examined;
        cmd->data = q;

        if (ngx_mail_plus_imap_send(cmd) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    cmd = ngx_mail_plus_imap_cmd(imap, q->pool);
    if (cmd == NULL
        || ngx_mail_plus_imap_cmd_text(cmd, "UID SORT (ARRIVAL) UTF-8 ")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    q->conditions = 0;

    rc = ngx_http_mail_plus_jmap_filter(q, cmd, q->filter, 0);
    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    cmd->handler = ngx_http_mail_plus_jmap_query_sorted;
    cmd->data = q;

    if (ngx_mail_plus_imap_send(cmd) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


static void
ngx_http_mail_plus_jmap_query_examined(ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, cmd->imap->log, 0,
                   "http jmap email: query EXAMINE answered %i", cmd->rc);
}


static void
ngx_http_mail_plus_jmap_query_sorted(ngx_mail_plus_imap_cmd_t *cmd)
{
    u_char                            *p;
    uint64_t                           uid;
    ngx_str_t                          set;
    ngx_uint_t                         i, k;
    ngx_mail_plus_imap_t              *imap;
    ngx_mail_plus_imap_value_t        *v;
    ngx_http_mail_plus_jmap_hit_t     *hit;
    ngx_mail_plus_imap_response_t    **resp;
    ngx_http_mail_plus_jmap_query_t   *q;

    q = cmd->data;
    imap = cmd->imap;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, imap->log, 0,
                   "http jmap email: SORT answered %i, %ui untagged",
                   cmd->rc, cmd->untagged.nelts);

    if (cmd->rc != NGX_OK) {
        q->call->error = "serverFail";
        q->call->description = imap->error;
        ngx_http_mail_plus_jmap_done(q->call);
        return;
    }

    if (cmd->status != NGX_MAIL_PLUS_IMAP_OK
        || imap->selected.len != q->mailbox->path.len
        || ngx_strncmp(imap->selected.data, q->mailbox->path.data,
                       q->mailbox->path.len)
           != 0)
    {
        /* gone, or refused: no hits there */
        ngx_http_mail_plus_jmap_query_continue(q);
        return;
    }

    resp = cmd->untagged.elts;

    for (i = 0; i < cmd->untagged.nelts; i++) {
        if (resp[i]->status != NGX_MAIL_PLUS_IMAP_DATA
            || resp[i]->name.len != 4
            || ngx_strncasecmp(resp[i]->name.data, (u_char *) "SORT", 4) != 0)
        {
            continue;
        }

        v = resp[i]->data;

        for (k = 0; k < v->nelts; k++) {
            if (ngx_mail_plus_imap_number(v->items[k], &uid) != NGX_OK
                || uid == 0 || uid > NGX_MAX_UINT32_VALUE)
            {
                continue;
            }

            hit = ngx_array_push(&q->hits);
            if (hit == NULL) {
                goto failed;
            }

            hit->uid = uid;
            hit->uidvalidity = imap->uidvalidity;
            hit->time = 0;
            hit->mailbox = q->mailbox;
        }
    }

    ngx_http_mail_plus_jmap_sorted_keep(q, imap);

    if (!q->dates || q->hits.nelts == q->first) {
        ngx_http_mail_plus_jmap_query_continue(q);
        return;
    }

    /* their INTERNALDATE, to merge and to make before and after exact */

    set.data = ngx_pnalloc(q->pool, (q->hits.nelts - q->first)
                                    * (NGX_INT64_LEN + 1));
    if (set.data == NULL) {
        goto failed;
    }

    p = set.data;
    hit = q->hits.elts;

    for (i = q->first; i < q->hits.nelts; i++) {
        if (p != set.data) {
            *p++ = ',';
        }

        p = ngx_sprintf(p, "%uL", hit[i].uid);
    }

    set.len = p - set.data;

    cmd = ngx_mail_plus_imap_cmd(imap, q->pool);
    if (cmd == NULL
        || ngx_mail_plus_imap_cmd_text(cmd, "UID FETCH %V (UID INTERNALDATE)",
                                       &set)
           != NGX_OK)
    {
        goto failed;
    }

    cmd->handler = ngx_http_mail_plus_jmap_query_dated;
    cmd->data = q;

    if (ngx_mail_plus_imap_send(cmd) != NGX_OK) {
        goto failed;
    }

    return;

failed:

    q->call->error = "serverFail";
    ngx_http_mail_plus_jmap_done(q->call);
}


static void
ngx_http_mail_plus_jmap_query_dated(ngx_mail_plus_imap_cmd_t *cmd)
{
    u_char                            date[32];
    time_t                            t;
    uint64_t                          uid;
    ngx_str_t                         s;
    ngx_uint_t                        i, k, lo, hi, mid, n;
    ngx_mail_plus_imap_value_t       *l;
    ngx_http_mail_plus_jmap_hit_t    *hit;
    ngx_mail_plus_imap_response_t   **resp;
    ngx_http_mail_plus_jmap_query_t  *q;

    q = cmd->data;

    if (cmd->rc != NGX_OK) {
        q->call->error = "serverFail";
        q->call->description = cmd->imap->error;
        ngx_http_mail_plus_jmap_done(q->call);
        return;
    }

    /* the mailbox's hits by UID, to find each answer's */

    hit = q->hits.elts;
    n = q->hits.nelts - q->first;

    ngx_qsort(hit + q->first, n, sizeof(ngx_http_mail_plus_jmap_hit_t),
              ngx_http_mail_plus_jmap_hit_cmp);

    resp = cmd->untagged.elts;

    for (i = 0; i < cmd->untagged.nelts; i++) {
        l = ngx_mail_plus_imap_item(resp[i]->data, 0);

        if (resp[i]->name.len != 5
            || ngx_strncasecmp(resp[i]->name.data, (u_char *) "FETCH", 5)
               != 0
            || l == NULL || l->type != NGX_MAIL_PLUS_IMAP_LIST)
        {
            continue;
        }

        uid = 0;
        ngx_str_null(&s);

        for (k = 0; k + 1 < l->nelts; k += 2) {
            if (ngx_mail_plus_imap_atom_is(l->items[k], "UID", 3)) {
                (void) ngx_mail_plus_imap_number(l->items[k + 1], &uid);

            } else if (ngx_mail_plus_imap_atom_is(l->items[k],
                                                  "INTERNALDATE", 12))
            {
                (void) ngx_mail_plus_imap_string(l->items[k + 1], &s);
            }
        }

        if (ngx_http_mail_plus_jmap_mime_internaldate(&s, date, &t)
            != NGX_OK)
        {
            continue;
        }

        lo = q->first;
        hi = q->hits.nelts;

        while (lo < hi) {
            mid = lo + (hi - lo) / 2;

            if (hit[mid].uid == uid) {
                hit[mid].time = t;
                break;
            }

            if (hit[mid].uid < uid) {
                lo = mid + 1;

            } else {
                hi = mid;
            }
        }
    }

    /* exact before and after; a hit with no date (gone) dropped */

    for (i = q->first, k = q->first; i < q->hits.nelts; i++) {
        if (hit[i].time == 0
            || (q->before && hit[i].time >= q->before)
            || (q->after && hit[i].time < q->after))
        {
            continue;
        }

        hit[k++] = hit[i];
    }

    q->hits.nelts = k;

    ngx_http_mail_plus_jmap_query_continue(q);
}


static void
ngx_http_mail_plus_jmap_query_continue(ngx_http_mail_plus_jmap_query_t *q)
{
    ngx_int_t  rc;

    rc = ngx_http_mail_plus_jmap_query_next(q);

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc == NGX_ERROR) {
        q->call->error = "serverFail";
    }

    ngx_http_mail_plus_jmap_done(q->call);
}


/* by INTERNALDATE, then by mailbox, then by UID */

static int ngx_libc_cdecl
ngx_http_mail_plus_jmap_hit_cmp(const void *one, const void *two)
{
    const ngx_http_mail_plus_jmap_hit_t  *a = one, *b = two;

    if (a->time != b->time) {
        return a->time < b->time ? -1 : 1;
    }

    if (a->mailbox != b->mailbox) {
        return (uintptr_t) a->mailbox < (uintptr_t) b->mailbox ? -1 : 1;
    }

    if (a->uid != b->uid) {
        return a->uid < b->uid ? -1 : 1;
    }

    return 0;
}


static ngx_int_t
ngx_http_mail_plus_jmap_query_answer(ngx_http_mail_plus_jmap_query_t *q)
{
    json_t                          *ids, *o;
    ngx_int_t                        pos, total, i;
    ngx_str_t                        id, state, anchor;
    ngx_http_mail_plus_jmap_ref_t    ref, aref;
    ngx_http_mail_plus_jmap_hit_t   *hit, tmp;

    hit = q->hits.elts;
    total = (ngx_int_t) q->hits.nelts;

    /* ascending by arrival; without dates the hits are of one mailbox
       and in its SORT's order (ARRIVAL, then UID) as they came */

    if (q->dates) {
        ngx_qsort(hit, total, sizeof(ngx_http_mail_plus_jmap_hit_t),
                  ngx_http_mail_plus_jmap_hit_cmp);
    }

    if (!q->ascending) {
        for (i = 0; i < total / 2; i++) {
            tmp = hit[i];
            hit[i] = hit[total - 1 - i];
            hit[total - 1 - i] = tmp;
        }
    }

    pos = q->position;

    if (q->anchor) {
        anchor.data = (u_char *) json_string_value(q->anchor);
        anchor.len = json_string_length(q->anchor);

        if (ngx_http_mail_plus_jmap_ref(q->pool, &anchor, &aref) != 'E') {
            goto anchor;
        }

        for (i = 0; i < total; i++) {
            if (hit[i].uid == aref.uid
                && hit[i].uidvalidity == aref.uidvalidity
                && ngx_strncmp(hit[i].mailbox->id + 1, aref.mailbox, 16) == 0)
            {
                break;
            }
        }

        if (i == total) {
            goto anchor;
        }

        pos = i + q->anchor_offset;

        if (pos < 0) {
            pos = 0;
        }

    } else if (pos < 0) {
        pos += total;

        if (pos < 0) {
            pos = 0;
        }
    }

    ids = json_array();
    if (ids == NULL) {
        return NGX_ERROR;
    }

    for (i = pos; i < total && (ngx_uint_t) (i - pos) < q->limit; i++) {
        ngx_memcpy(ref.mailbox, hit[i].mailbox->id + 1, 16);
        ref.uidvalidity = hit[i].uidvalidity;
        ref.uid = hit[i].uid;
        ngx_str_null(&ref.part);

        if (ngx_http_mail_plus_jmap_ref_id(q->pool, 'E', &ref, &id) != NGX_OK
            || json_array_append_new(ids, json_stringn((char *) id.data,
                                                       id.len))
               != 0)
        {
            json_decref(ids);
            return NGX_ERROR;
        }
    }

    if (ngx_http_mail_plus_jmap_email_state(q->pool, q->call->ctx->mailboxes,
                                            &state)
        != NGX_OK)
    {
        json_decref(ids);
        return NGX_ERROR;
    }

    o = json_pack("{s:s%,s:s%,s:b,s:I,s:o}",
                  "accountId", (char *) q->call->ctx->account_id.data,
                  q->call->ctx->account_id.len,
                  "queryState", (char *) state.data, state.len,
                  "canCalculateChanges", 0,
                  "position", (json_int_t) (pos > total ? total : pos),
                  "ids", ids);
    if (o == NULL) {
        return NGX_ERROR;
    }

    if (q->total) {
        json_object_set_new(o, "total", json_integer(total));
    }

    if (q->capped) {
        json_object_set_new(o, "limit", json_integer(q->limit));
    }

    q->call->result = o;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, q->call->request->connection->log, 0,
                   "http jmap email: query answered, %i of %i",
                   (ngx_int_t) json_array_size(ids), total);

    return NGX_OK;

anchor:

    q->call->error = "anchorNotFound";

    return NGX_OK;
}


/* the filter as JSON text, the key of a kept SORT */

static ngx_int_t
ngx_http_mail_plus_jmap_sorted_text(ngx_http_mail_plus_jmap_query_t *q,
    ngx_str_t *text)
{
    char  *dump;

    dump = json_dumps(q->filter ? q->filter : json_null(),
                      JSON_COMPACT|JSON_SORT_KEYS|JSON_ENCODE_ANY);
    if (dump == NULL) {
        return NGX_ERROR;
    }

    text->len = ngx_strlen(dump);
    text->data = ngx_pnalloc(q->pool, text->len);

    if (text->data != NULL) {
        ngx_memcpy(text->data, dump, text->len);
    }

    free(dump);

    return text->data ? NGX_OK : NGX_ERROR;
}


/* the kept SORT's UIDs as this query's hits: NGX_OK, or NGX_DECLINED */

static ngx_int_t
ngx_http_mail_plus_jmap_sorted_find(ngx_http_mail_plus_jmap_query_t *q,
    ngx_mail_plus_imap_t *imap)
{
    u_char                             *p;
    uint32_t                           *uids;
    ngx_str_t                           text;
    ngx_uint_t                          i;
    ngx_http_mail_plus_jmap_hit_t      *hit;
    ngx_http_mail_plus_jmap_sorted_t   *k;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    k = imap->kept;
    mb = q->mailbox;

    if (k == NULL || q->dates || q->only != mb
        || !ngx_http_mail_plus_jmap_mbstate_same(&k->mailbox, mb))
    {
        return NGX_DECLINED;
    }

    if (ngx_http_mail_plus_jmap_sorted_text(q, &text) != NGX_OK) {
        return NGX_ERROR;
    }

    p = (u_char *) (k + 1);

    if (text.len != k->filter_len || ngx_memcmp(p, text.data, text.len) != 0)
    {
        return NGX_DECLINED;
    }

    uids = (uint32_t *) ngx_align_ptr(p + k->filter_len, sizeof(uint32_t));

    for (i = 0; i < k->nuids; i++) {
        hit = ngx_array_push(&q->hits);
        if (hit == NULL) {
            return NGX_ERROR;
        }

        hit->uid = uids[i];
        hit->uidvalidity = mb->uidvalidity;
        hit->time = 0;
        hit->mailbox = mb;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, q->call->request->connection->log, 0,
                   "http jmap email: the SORT kept for \"%*s\" taken",
                   (size_t) 17, mb->id);

    return NGX_OK;
}


/* the kept SORT's run after some of its UIDs: the page to read ahead */

ngx_int_t
ngx_http_mail_plus_jmap_sorted_next(ngx_mail_plus_imap_t *imap,
    ngx_http_mail_plus_jmap_mailbox_t *mb, uint32_t *uids, ngx_uint_t n,
    uint32_t *next, ngx_uint_t *nnext)
{
    u_char                            *p;
    uint32_t                          *sorted;
    ngx_int_t                          step, pos, i;
    ngx_http_mail_plus_jmap_sorted_t  *k;

    k = imap->kept;

    if (k == NULL || n < 2
        || !ngx_http_mail_plus_jmap_mbstate_same(&k->mailbox, mb))
    {
        return NGX_DECLINED;
    }

    p = (u_char *) (k + 1) + k->filter_len;
    sorted = (uint32_t *) ngx_align_ptr(p, sizeof(uint32_t));

    for (pos = 0; pos < (ngx_int_t) k->nuids; pos++) {
        if (sorted[pos] == uids[0]) {
            break;
        }
    }

    if (pos == (ngx_int_t) k->nuids) {
        return NGX_DECLINED;
    }

    /* the run: up (a query ascending) or down (descending, the default) */

    step = (pos + 1 < (ngx_int_t) k->nuids && sorted[pos + 1] == uids[1])
           ? 1 : -1;

    for (i = 0; i < (ngx_int_t) n; i++, pos += step) {
        if (pos < 0 || pos >= (ngx_int_t) k->nuids || sorted[pos] != uids[i])
        {
            return NGX_DECLINED;
        }
    }

    for (*nnext = 0;
         *nnext < n && pos >= 0 && pos < (ngx_int_t) k->nuids;
         pos += step)
    {
        next[(*nnext)++] = sorted[pos];
    }

    return *nnext ? NGX_OK : NGX_DECLINED;
}


/* a single mailbox's SORT kept with the session, in place of the last */

static void
ngx_http_mail_plus_jmap_sorted_keep(ngx_http_mail_plus_jmap_query_t *q,
    ngx_mail_plus_imap_t *imap)
{
    u_char                             *p;
    size_t                              size;
    uint32_t                           *uids;
    ngx_str_t                           text;
    ngx_uint_t                          i, n;
    ngx_http_mail_plus_jmap_hit_t      *hit;
    ngx_http_mail_plus_jmap_sorted_t   *k;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    mb = q->mailbox;

    if (imap->kept) {
        ngx_free(imap->kept);
        imap->kept = NULL;
    }

    /*
     * kept under the state the list found before the SORT: the SORT may
     * have seen a later one, but a later request finding that same state
     * again proves nothing changed in between (HIGHESTMODSEQ and UIDNEXT
     * only grow)
     */

    if (q->dates || q->only != mb || mb->highestmodseq == 0
        || imap->uidvalidity != mb->uidvalidity
        || ngx_http_mail_plus_jmap_sorted_text(q, &text) != NGX_OK)
    {
        return;
    }

    n = q->hits.nelts - q->first;
    size = sizeof(ngx_http_mail_plus_jmap_sorted_t) + text.len
           + sizeof(uint32_t) + n * sizeof(uint32_t);

    k = ngx_alloc(size, imap->log);
    if (k == NULL) {
        return;
    }

    ngx_http_mail_plus_jmap_mbstate_set(&k->mailbox, mb);
    k->filter_len = text.len;
    k->nuids = n;

    p = ngx_cpymem((u_char *) (k + 1), text.data, text.len);
    uids = (uint32_t *) ngx_align_ptr(p, sizeof(uint32_t));

    hit = q->hits.elts;

    for (i = 0; i < n; i++) {
        uids[i] = (uint32_t) hit[q->first + i].uid;
    }

    imap->kept = k;
}
