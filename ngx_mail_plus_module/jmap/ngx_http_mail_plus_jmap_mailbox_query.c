
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_http_mail_plus_jmap.h"


/*
 * Mailbox/query (RFC 8621, section 2.3) over the mailbox list: filters
 * parentId, name (contains, ASCII case-insensitively), role, hasAnyRole
 * and isSubscribed, with AND, OR and NOT; sorts by name and sortOrder
 * (always 0 here); position, anchor, anchorOffset, limit and
 * calculateTotal.  sortAsTree is "unsupportedSort", filterAsTree
 * "unsupportedFilter".  Mailbox/queryChanges: "cannotCalculateChanges".
 */


#define NGX_HTTP_MAIL_PLUS_JMAP_FILTER_DEPTH  16


typedef struct {
    ngx_uint_t                          name;       /* else sortOrder */
    ngx_uint_t                          ascending;
} ngx_http_mail_plus_jmap_mq_sort_t;


static ngx_int_t ngx_http_mail_plus_jmap_mailbox_query_handler(
    ngx_http_mail_plus_jmap_call_t *call);
static void ngx_http_mail_plus_jmap_mq_listed(
    ngx_http_mail_plus_jmap_call_t *call);
static ngx_int_t ngx_http_mail_plus_jmap_mq_run(
    ngx_http_mail_plus_jmap_call_t *call);
static ngx_int_t ngx_http_mail_plus_jmap_mq_filter_ok(json_t *filter,
    ngx_uint_t depth);
static ngx_uint_t ngx_http_mail_plus_jmap_mq_match(ngx_array_t *mailboxes,
    ngx_uint_t i, json_t *filter);
static ngx_uint_t ngx_http_mail_plus_jmap_mq_condition(
    ngx_array_t *mailboxes, ngx_uint_t i, json_t *filter);
static ngx_int_t ngx_http_mail_plus_jmap_mq_sort(json_t *sort,
    ngx_array_t *spec);
static ngx_int_t ngx_http_mail_plus_jmap_mq_cmp(
    ngx_http_mail_plus_jmap_mailbox_t *a, ngx_http_mail_plus_jmap_mailbox_t *b,
    ngx_array_t *spec);
static ngx_int_t ngx_http_mail_plus_jmap_mailbox_query_changes(
    ngx_http_mail_plus_jmap_call_t *call);


ngx_http_mail_plus_jmap_method_t  ngx_http_mail_plus_jmap_mailbox_query[] = {
    { "Mailbox/query", NGX_HTTP_MAIL_PLUS_JMAP_MAIL,
      ngx_http_mail_plus_jmap_mailbox_query_handler },
    { "Mailbox/queryChanges", NGX_HTTP_MAIL_PLUS_JMAP_MAIL,
      ngx_http_mail_plus_jmap_mailbox_query_changes },
    { NULL, 0, NULL }
};


static ngx_int_t
ngx_http_mail_plus_jmap_mailbox_query_handler(
    ngx_http_mail_plus_jmap_call_t *call)
{
    json_t      *v;
    ngx_int_t    rc;
    ngx_array_t  spec;

    if (ngx_http_mail_plus_jmap_account(call) != NGX_OK) {
        return NGX_OK;
    }

    /* the arguments checked before the backend is asked */

    if (json_is_true(json_object_get(call->args, "sortAsTree"))) {
        call->error = "unsupportedSort";
        call->description = "sortAsTree is not supported";
        return NGX_OK;
    }

    if (json_is_true(json_object_get(call->args, "filterAsTree"))) {
        call->error = "unsupportedFilter";
        call->description = "filterAsTree is not supported";
        return NGX_OK;
    }

    v = json_object_get(call->args, "filter");

    if (v && !json_is_null(v)) {
        rc = ngx_http_mail_plus_jmap_mq_filter_ok(v, 0);

        if (rc != NGX_OK) {
            call->error = (rc == NGX_DECLINED) ? "unsupportedFilter"
                                               : "invalidArguments";
            return NGX_OK;
        }
    }

    if (ngx_array_init(&spec, call->request->pool, 2,
                       sizeof(ngx_http_mail_plus_jmap_mq_sort_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_mail_plus_jmap_mq_sort(json_object_get(call->args, "sort"),
                                         &spec);
    if (rc != NGX_OK) {
        call->error = (rc == NGX_DECLINED) ? "unsupportedSort"
                                           : "invalidArguments";
        return NGX_OK;
    }

    v = json_object_get(call->args, "position");
    if (v && !json_is_null(v) && !json_is_integer(v)) {
        goto invalid;
    }

    v = json_object_get(call->args, "anchorOffset");
    if (v && !json_is_null(v) && !json_is_integer(v)) {
        goto invalid;
    }

    v = json_object_get(call->args, "anchor");
    if (v && !json_is_null(v) && !json_is_string(v)) {
        goto invalid;
    }

    v = json_object_get(call->args, "limit");
    if (v && !json_is_null(v)
        && (!json_is_integer(v) || json_integer_value(v) < 0))
    {
        goto invalid;
    }

    rc = ngx_http_mail_plus_jmap_mailboxes(call,
                                           ngx_http_mail_plus_jmap_mq_listed);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_mail_plus_jmap_mq_run(call);

invalid:

    call->error = "invalidArguments";
    return NGX_OK;
}


static void
ngx_http_mail_plus_jmap_mq_listed(ngx_http_mail_plus_jmap_call_t *call)
{
    if (call->ctx->mailboxes
        && ngx_http_mail_plus_jmap_mq_run(call) != NGX_OK
        && call->error == NULL)
    {
        call->error = "serverFail";
    }

    ngx_http_mail_plus_jmap_done(call);
}


/* the list known: filtered, sorted, the window answered */

static ngx_int_t
ngx_http_mail_plus_jmap_mq_run(ngx_http_mail_plus_jmap_call_t *call)
{
    u_char                              state[18];
    json_t                             *filter, *ids, *v;
    ngx_int_t                           pos, k;
    ngx_uint_t                          i, j, n, limit, t;
    ngx_uint_t                         *order;
    const char                         *anchor;
    ngx_array_t                        *mailboxes, spec;
    ngx_http_mail_plus_jmap_ctx_t      *ctx;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    ctx = call->ctx;
    mailboxes = ctx->mailboxes;
    mb = mailboxes->elts;
    filter = json_object_get(call->args, "filter");

    if (ngx_array_init(&spec, call->request->pool, 2,
                       sizeof(ngx_http_mail_plus_jmap_mq_sort_t))
        != NGX_OK
        || ngx_http_mail_plus_jmap_mq_sort(json_object_get(call->args,
                                                           "sort"),
                                           &spec)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    order = ngx_palloc(call->request->pool,
                       (mailboxes->nelts + 1) * sizeof(ngx_uint_t));
    if (order == NULL) {
        return NGX_ERROR;
    }

    n = 0;

    for (i = 0; i < mailboxes->nelts; i++) {
        if (filter == NULL || json_is_null(filter)
            || ngx_http_mail_plus_jmap_mq_match(mailboxes, i, filter))
        {
            order[n++] = i;
        }
    }

    /* an insertion sort: stable, the list's order among equals */

    for (i = 1; i < n; i++) {
        t = order[i];

        for (j = i;
             j > 0 && ngx_http_mail_plus_jmap_mq_cmp(&mb[order[j - 1]],
                                                     &mb[t], &spec) > 0;
             j--)
        {
            order[j] = order[j - 1];
        }

        order[j] = t;
    }

    anchor = json_string_value(json_object_get(call->args, "anchor"));

    if (anchor) {
        for (i = 0; i < n; i++) {
            if (ngx_strcmp(anchor, mb[order[i]].id) == 0) {
                break;
            }
        }

        if (i == n) {
            call->error = "anchorNotFound";
            return NGX_OK;
        }

        k = (ngx_int_t) json_integer_value(json_object_get(call->args,
                                                           "anchorOffset"));
        pos = (ngx_int_t) i + k;

    } else {
        pos = (ngx_int_t) json_integer_value(json_object_get(call->args,
                                                             "position"));
        if (pos < 0) {
            pos += (ngx_int_t) n;
        }
    }

    if (pos < 0) {
        pos = 0;
    }

    if ((ngx_uint_t) pos > n) {
        pos = (ngx_int_t) n;
    }

    v = json_object_get(call->args, "limit");
    limit = json_is_integer(v) ? (ngx_uint_t) json_integer_value(v) : n;

    ids = json_array();
    if (ids == NULL) {
        return NGX_ERROR;
    }

    for (i = pos; i < n && i - pos < limit; i++) {
        if (json_array_append_new(ids, json_string((char *) mb[order[i]].id))
            != 0)
        {
            json_decref(ids);
            return NGX_ERROR;
        }
    }

    ngx_http_mail_plus_jmap_mailbox_state(mailboxes, state);

    call->result = json_pack("{ss#sssbsIso}",
                             "accountId",
                             (const char *) ctx->account_id.data,
                             (int) ctx->account_id.len,
                             "queryState", (const char *) state,
                             "canCalculateChanges", 0,
                             "position", (json_int_t) pos,
                             "ids", ids);
    if (call->result == NULL) {
        return NGX_ERROR;
    }

    if (json_is_true(json_object_get(call->args, "calculateTotal"))
        && json_object_set_new(call->result, "total",
                               json_integer((json_int_t) n))
           != 0)
    {
        return NGX_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, call->request->connection->log, 0,
                   "jmap mailbox query: %ui of %ui from %i", n,
                   mailboxes->nelts, pos);

    return NGX_OK;
}


/*
 * a filter's form: NGX_OK, NGX_DECLINED (a property or an operator not
 * known: "unsupportedFilter"), NGX_ERROR (not a filter)
 */

static ngx_int_t
ngx_http_mail_plus_jmap_mq_filter_ok(json_t *filter, ngx_uint_t depth)
{
    json_t      *v, *conds;
    size_t       i;
    ngx_int_t    rc;
    const char  *key, *op;

    if (!json_is_object(filter)
        || depth > NGX_HTTP_MAIL_PLUS_JMAP_FILTER_DEPTH)
    {
        return NGX_ERROR;
    }

    op = json_string_value(json_object_get(filter, "operator"));

    if (op) {
        conds = json_object_get(filter, "conditions");

        if (ngx_strcmp(op, "AND") != 0 && ngx_strcmp(op, "OR") != 0
            && ngx_strcmp(op, "NOT") != 0)
        {
            return NGX_DECLINED;
        }

        if (!json_is_array(conds) || json_object_size(filter) != 2) {
            return NGX_ERROR;
        }

        for (i = 0; i < json_array_size(conds); i++) {
            rc = ngx_http_mail_plus_jmap_mq_filter_ok(
                     json_array_get(conds, i), depth + 1);
            if (rc != NGX_OK) {
                return rc;
            }
        }

        return NGX_OK;
    }

    json_object_foreach(filter, key, v) {

        if (ngx_strcmp(key, "parentId") == 0
            || ngx_strcmp(key, "role") == 0)
        {
            if (!json_is_null(v) && !json_is_string(v)) {
                return NGX_ERROR;
            }

        } else if (ngx_strcmp(key, "name") == 0) {
            if (!json_is_string(v)) {
                return NGX_ERROR;
            }

        } else if (ngx_strcmp(key, "hasAnyRole") == 0
                   || ngx_strcmp(key, "isSubscribed") == 0)
        {
            if (!json_is_boolean(v)) {
                return NGX_ERROR;
            }

        } else {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_mail_plus_jmap_mq_match(ngx_array_t *mailboxes, ngx_uint_t i,
    json_t *filter)
{
    json_t      *conds;
    size_t       k;
    ngx_uint_t   m;
    const char  *op;

    op = json_string_value(json_object_get(filter, "operator"));

    if (op == NULL) {
        return ngx_http_mail_plus_jmap_mq_condition(mailboxes, i, filter);
    }

    conds = json_object_get(filter, "conditions");

    for (k = 0; k < json_array_size(conds); k++) {
        m = ngx_http_mail_plus_jmap_mq_match(mailboxes, i,
                                             json_array_get(conds, k));

        if (op[0] == 'A' && !m) {
            return 0;
        }

        if (op[0] == 'O' && m) {
            return 1;
        }

        if (op[0] == 'N' && m) {
            return 0;
        }
    }

    return op[0] != 'O';
}


static ngx_uint_t
ngx_http_mail_plus_jmap_mq_condition(ngx_array_t *mailboxes, ngx_uint_t i,
    json_t *filter)
{
    json_t                             *v;
    size_t                              n;
    const char                         *key, *s;
    ngx_http_mail_plus_jmap_mailbox_t  *mb, *all;

    all = mailboxes->elts;
    mb = &all[i];

    json_object_foreach(filter, key, v) {

        s = json_string_value(v);

        if (ngx_strcmp(key, "parentId") == 0) {
            if (s == NULL ? mb->parent != -1
                          : (mb->parent == -1
                             || ngx_strcmp(s, all[mb->parent].id) != 0))
            {
                return 0;
            }

        } else if (ngx_strcmp(key, "role") == 0) {
            if (s == NULL ? mb->role != NULL
                          : (mb->role == NULL || ngx_strcmp(s, mb->role) != 0))
            {
                return 0;
            }

        } else if (ngx_strcmp(key, "hasAnyRole") == 0) {
            if (json_is_true(v) != (mb->role != NULL)) {
                return 0;
            }

        } else if (ngx_strcmp(key, "isSubscribed") == 0) {
            if (json_is_true(v) != (mb->subscribed != 0)) {
                return 0;
            }

        } else { /* name */
            n = json_string_length(v);

            if (n && ngx_strlcasestrn(mb->name.data,
                                      mb->name.data + mb->name.len,
                                      (u_char *) s, n - 1)
                     == NULL)
            {
                return 0;
            }
        }
    }

    return 1;
}


/* the comparators: NGX_DECLINED for a property not sorted on */

static ngx_int_t
ngx_http_mail_plus_jmap_mq_sort(json_t *sort,
    ngx_array_t *spec)
{
    json_t                             *c, *v;
    size_t                              i;
    const char                         *p;
    ngx_http_mail_plus_jmap_mq_sort_t  *s;

    if (sort == NULL || json_is_null(sort)) {
        return NGX_OK;
    }

    if (!json_is_array(sort)) {
        return NGX_ERROR;
    }

    for (i = 0; i < json_array_size(sort); i++) {
        c = json_array_get(sort, i);
        p = json_string_value(json_object_get(c, "property"));

        if (p == NULL) {
            return NGX_ERROR;
        }

        if (ngx_strcmp(p, "name") != 0 && ngx_strcmp(p, "sortOrder") != 0) {
            return NGX_DECLINED;
        }

        v = json_object_get(c, "isAscending");

        if (v && !json_is_boolean(v)) {
            return NGX_ERROR;
        }

        s = ngx_array_push(spec);
        if (s == NULL) {
            return NGX_ERROR;
        }

        s->name = (p[0] == 'n');
        s->ascending = (v == NULL || json_is_true(v));
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mail_plus_jmap_mq_cmp(ngx_http_mail_plus_jmap_mailbox_t *a,
    ngx_http_mail_plus_jmap_mailbox_t *b, ngx_array_t *spec)
{
    ngx_int_t                           rc;
    ngx_uint_t                          i;
    ngx_http_mail_plus_jmap_mq_sort_t  *s;

    s = spec->elts;

    for (i = 0; i < spec->nelts; i++) {
        if (!s[i].name) {
            continue;   /* sortOrder: 0 for all */
        }

        rc = ngx_strncasecmp(a->name.data, b->name.data,
                             ngx_min(a->name.len, b->name.len));

        if (rc == 0) {
            rc = (ngx_int_t) a->name.len - (ngx_int_t) b->name.len;
        }

        if (rc) {
            return s[i].ascending ? rc : -rc;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_mail_plus_jmap_mailbox_query_changes(
    ngx_http_mail_plus_jmap_call_t *call)
{
    if (ngx_http_mail_plus_jmap_account(call) != NGX_OK) {
        return NGX_OK;
    }

    call->error = "cannotCalculateChanges";
    call->description = "query changes are not kept";

    return NGX_OK;
}
