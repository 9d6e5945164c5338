
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
 * Email/get and Thread/get (RFC 8621, sections 3.1 and 4.2); Email/query
 * is in ngx_http_mail_plus_jmap_query.c.
 *
 * The ids asked are sorted by mailbox and UID; each mailbox's run is one
 * EXAMINE (none if it is the one selected) and one UID FETCH of what the
 * properties need, pipelined; then, where body values (or a preview
 * PREVIEW did not give) are asked, one UID FETCH of BINARY.PEEK[part]
 * for each set of messages that want the same parts (BODY.PEEK and our
 * own decoding where BINARY is not offered or refused).  Then the next
 * mailbox.
 */


#define NGX_HTTP_MAIL_PLUS_JMAP_PREVIEW_BYTES  1024


typedef struct {
    ngx_http_mail_plus_jmap_part_t    *part;
    ngx_str_t                          utf8;
    ngx_uint_t                         problem;
    ngx_uint_t                         truncated;
    ngx_uint_t                         preview;   /* for the preview only */
    ngx_uint_t                         got;
    ngx_uint_t                         came;      /* its value */
} ngx_http_mail_plus_jmap_want_t;


typedef struct {
    ngx_http_mail_plus_jmap_ref_t      ref;
    const char                        *id;         /* as asked */
    ngx_http_mail_plus_jmap_mailbox_t *mailbox;    /* or NULL */
    ngx_uint_t                         found;
    ngx_mail_plus_imap_value_t        *flags;
    ngx_str_t                          internaldate;
    uint64_t                           size;
    ngx_str_t                          header;
    ngx_array_t                       *headers;
    ngx_http_mail_plus_jmap_part_t    *root;
    ngx_array_t                       *text;
    ngx_array_t                       *html;
    ngx_array_t                       *att;
    ngx_str_t                          preview;    /* PREVIEW's */
    ngx_array_t                       *wants;      /* of _want_t */
    ngx_str_t                          items;      /* the body FETCH's */
    ngx_uint_t                         values;     /* of wants, come */
    ngx_str_t                          object;     /* written early, in
                                                      get->early */
    unsigned                           queued:1;
    unsigned                           written:1;  /* into get->text */
} ngx_http_mail_plus_jmap_msg_t;


typedef struct {
    ngx_http_mail_plus_jmap_call_t    *call;
    ngx_pool_t                        *pool;
    ngx_uint_t                         thread;     /* Thread/get */
    ngx_http_mail_plus_jmap_msg_t     *msgs;
    ngx_uint_t                         nmsgs;
    ngx_uint_t                         next;       /* the group's first */
    ngx_uint_t                         end;        /* past its last */
    ngx_uint_t                         pending;    /* body commands */
    json_t                            *props;      /* or NULL: default */
    json_t                            *body_props;
    json_t                            *not_found;
    ngx_http_mail_plus_jmap_text_t    *text;       /* the list written as
                                                      it comes, or NULL */
    ngx_http_mail_plus_jmap_text_t     early;      /* objects but their
                                                      values */
    ngx_event_t                        early_ev;
    uint32_t                          *order;      /* the UIDs as asked,
                                                      for a read-ahead */
    size_t                             max_bytes;
    ngx_str_t                          fields;     /* or the whole header */
    unsigned                           want_headers:1;
    unsigned                           want_structure:1;
    unsigned                           want_preview:1;
    unsigned                           text_values:1;
    unsigned                           html_values:1;
    unsigned                           all_values:1;
    unsigned                           raw_values:1;  /* written by us */
    unsigned                           failed:1;
} ngx_http_mail_plus_jmap_get_t;


typedef struct {
    ngx_http_mail_plus_jmap_get_t     *get;
    ngx_uint_t                         first;      /* msgs of the group */
    ngx_uint_t                         last;
    ngx_str_t                          items;
    ngx_uint_t                         binary;
} ngx_http_mail_plus_jmap_body_cmd_t;


static ngx_int_t ngx_http_mail_plus_jmap_thread_get(
    ngx_http_mail_plus_jmap_call_t *call);
static ngx_int_t ngx_http_mail_plus_jmap_get_start(
    ngx_http_mail_plus_jmap_call_t *call, ngx_uint_t thread);
static ngx_int_t ngx_http_mail_plus_jmap_known_props(ngx_pool_t *pool,
    json_t *list, const char **names, const char **more);
static ngx_int_t ngx_http_mail_plus_jmap_get_props(
    ngx_http_mail_plus_jmap_call_t *call, ngx_http_mail_plus_jmap_get_t *g);
static ngx_int_t ngx_http_mail_plus_jmap_get_fields(
    ngx_http_mail_plus_jmap_get_t *g, size_t len);
static ngx_int_t ngx_http_mail_plus_jmap_get_ids(
    ngx_http_mail_plus_jmap_call_t *call, ngx_http_mail_plus_jmap_get_t *g,
    json_t *ids);
static void ngx_http_mail_plus_jmap_get_mailboxes(
    ngx_http_mail_plus_jmap_call_t *call);
static ngx_int_t ngx_http_mail_plus_jmap_get_resolve(
    ngx_http_mail_plus_jmap_get_t *g);
static int ngx_libc_cdecl ngx_http_mail_plus_jmap_msg_cmp(const void *one,
    const void *two);
static ngx_int_t ngx_http_mail_plus_jmap_get_next(
    ngx_http_mail_plus_jmap_get_t *g);
static void ngx_http_mail_plus_jmap_examined(ngx_mail_plus_imap_cmd_t *cmd);
static void ngx_http_mail_plus_jmap_get_fetched(ngx_mail_plus_imap_cmd_t *cmd);
static ngx_http_mail_plus_jmap_msg_t *ngx_http_mail_plus_jmap_get_msg(
    ngx_http_mail_plus_jmap_get_t *g, ngx_uint_t first, ngx_uint_t last,
    ngx_mail_plus_imap_response_t *resp, ngx_mail_plus_imap_value_t **list);
static void ngx_http_mail_plus_jmap_get_item(ngx_http_mail_plus_jmap_get_t *g,
    ngx_http_mail_plus_jmap_msg_t *m, ngx_mail_plus_imap_value_t *key,
    ngx_mail_plus_imap_value_t *val);
static ngx_int_t ngx_http_mail_plus_jmap_get_wants(
    ngx_http_mail_plus_jmap_get_t *g, ngx_http_mail_plus_jmap_msg_t *m);
static ngx_int_t ngx_http_mail_plus_jmap_want(ngx_pool_t *pool,
    ngx_http_mail_plus_jmap_msg_t *m, ngx_http_mail_plus_jmap_part_t *part,
    ngx_uint_t preview);
static ngx_int_t ngx_http_mail_plus_jmap_get_bodies(
    ngx_http_mail_plus_jmap_get_t *g);
static ngx_int_t ngx_http_mail_plus_jmap_body_send(
    ngx_http_mail_plus_jmap_body_cmd_t *bc);
static ngx_int_t ngx_http_mail_plus_jmap_get_body_one(
    ngx_mail_plus_imap_cmd_t *cmd, ngx_mail_plus_imap_response_t *resp);
static void ngx_http_mail_plus_jmap_get_body(ngx_mail_plus_imap_cmd_t *cmd);
static void ngx_http_mail_plus_jmap_get_early(ngx_event_t *ev);
static void ngx_http_mail_plus_jmap_get_value(ngx_http_mail_plus_jmap_get_t *g,
    ngx_http_mail_plus_jmap_msg_t *m, ngx_str_t *key,
    ngx_mail_plus_imap_value_t *val, ngx_uint_t binary);
static void ngx_http_mail_plus_jmap_get_continue(
    ngx_http_mail_plus_jmap_get_t *g);
static ngx_int_t ngx_http_mail_plus_jmap_get_answer(
    ngx_http_mail_plus_jmap_get_t *g);
static ngx_int_t ngx_http_mail_plus_jmap_get_write(
    ngx_http_mail_plus_jmap_get_t *g, ngx_http_mail_plus_jmap_msg_t *m,
    json_t *list);
static json_t *ngx_http_mail_plus_jmap_get_email(
    ngx_http_mail_plus_jmap_get_t *g, ngx_http_mail_plus_jmap_msg_t *m);
static json_t *ngx_http_mail_plus_jmap_get_prop(
    ngx_http_mail_plus_jmap_get_t *g, ngx_http_mail_plus_jmap_msg_t *m,
    const char *prop, ngx_str_t *tail);
static json_t *ngx_http_mail_plus_jmap_keywords(
    ngx_mail_plus_imap_value_t *flags);
static json_t *ngx_http_mail_plus_jmap_parts(ngx_http_mail_plus_jmap_get_t *g,
    ngx_array_t *parts, ngx_str_t *tail);
static ngx_int_t ngx_http_mail_plus_jmap_values_text(
    ngx_http_mail_plus_jmap_get_t *g, ngx_http_mail_plus_jmap_msg_t *m);
static json_t *ngx_http_mail_plus_jmap_values(
    ngx_http_mail_plus_jmap_get_t *g, ngx_http_mail_plus_jmap_msg_t *m);
static ngx_uint_t ngx_http_mail_plus_jmap_has_attachment(
    ngx_http_mail_plus_jmap_msg_t *m);
static void ngx_http_mail_plus_jmap_get_cancel(
    ngx_http_mail_plus_jmap_call_t *call);


ngx_http_mail_plus_jmap_method_t  ngx_http_mail_plus_jmap_email[] = {
    { "Email/get", NGX_HTTP_MAIL_PLUS_JMAP_MAIL,
      ngx_http_mail_plus_jmap_email_get },
    { "Email/query", NGX_HTTP_MAIL_PLUS_JMAP_MAIL,
      ngx_http_mail_plus_jmap_email_query },
    { "Thread/get", NGX_HTTP_MAIL_PLUS_JMAP_MAIL,
      ngx_http_mail_plus_jmap_thread_get },
    { NULL, 0, NULL }
};


/* a header property and its field and form */

typedef struct {
    const char                        *prop;
    const char                        *field;
    ngx_http_mail_plus_jmap_form_e     form;
} ngx_http_mail_plus_jmap_hprop_t;


static ngx_http_mail_plus_jmap_hprop_t  ngx_http_mail_plus_jmap_hprops[] = {
    { "messageId", "Message-ID", NGX_HTTP_MAIL_PLUS_JMAP_MESSAGE_IDS },
    { "inReplyTo", "In-Reply-To", NGX_HTTP_MAIL_PLUS_JMAP_MESSAGE_IDS },
    { "references", "References", NGX_HTTP_MAIL_PLUS_JMAP_MESSAGE_IDS },
    { "sender", "Sender", NGX_HTTP_MAIL_PLUS_JMAP_ADDRESSES },
    { "from", "From", NGX_HTTP_MAIL_PLUS_JMAP_ADDRESSES },
    { "to", "To", NGX_HTTP_MAIL_PLUS_JMAP_ADDRESSES },
    { "cc", "Cc", NGX_HTTP_MAIL_PLUS_JMAP_ADDRESSES },
    { "bcc", "Bcc", NGX_HTTP_MAIL_PLUS_JMAP_ADDRESSES },
    { "replyTo", "Reply-To", NGX_HTTP_MAIL_PLUS_JMAP_ADDRESSES },
    { "subject", "Subject", NGX_HTTP_MAIL_PLUS_JMAP_TEXT },
    { "sentAt", "Date", NGX_HTTP_MAIL_PLUS_JMAP_DATE },
    { NULL, NULL, 0 }
};


static const char  *ngx_http_mail_plus_jmap_default_props[] = {
    "id", "blobId", "threadId", "mailboxIds", "keywords", "size",
    "receivedAt", "messageId", "inReplyTo", "references", "sender", "from",
    "to", "cc", "bcc", "replyTo", "subject", "sentAt", "hasAttachment",
    "preview", "bodyValues", "textBody", "htmlBody", "attachments", NULL
};


static const char  *ngx_http_mail_plus_jmap_other_props[] = {
    "headers", "bodyStructure", NULL
};


static const char  *ngx_http_mail_plus_jmap_body_props[] = {
    "partId", "blobId", "size", "name", "type", "charset", "disposition",
    "cid", "language", "location", "headers", "subParts", NULL
};


ngx_int_t
ngx_http_mail_plus_jmap_keyword(const char *k)
{
    size_t  n;

    for (n = 0; k[n]; n++) {
        if (k[n] < 0x21 || k[n] > 0x7e || ngx_strchr("(){]%*\"\\", k[n])) {
            return NGX_ERROR;
        }
    }

    return (n == 0 || n > 255) ? NGX_ERROR : NGX_OK;
}


ngx_int_t
ngx_http_mail_plus_jmap_email_get(ngx_http_mail_plus_jmap_call_t *call)
{
    return ngx_http_mail_plus_jmap_get_start(call, 0);
}


static ngx_int_t
ngx_http_mail_plus_jmap_thread_get(ngx_http_mail_plus_jmap_call_t *call)
{
    return ngx_http_mail_plus_jmap_get_start(call, 1);
}


static ngx_int_t
ngx_http_mail_plus_jmap_get_start(ngx_http_mail_plus_jmap_call_t *call,
    ngx_uint_t thread)
{
    json_t                         *ids;
    ngx_int_t                       rc;
    ngx_http_mail_plus_jmap_get_t  *g;

    if (ngx_http_mail_plus_jmap_account(call) != NGX_OK) {
        return NGX_OK;
    }

    g = ngx_pcalloc(call->request->pool, sizeof(ngx_http_mail_plus_jmap_get_t));
    if (g == NULL) {
        return NGX_ERROR;
    }

    g->call = call;
    g->pool = call->request->pool;
    g->thread = thread;
    call->data = g;

    g->not_found = json_array();
    if (g->not_found == NULL) {
        return NGX_ERROR;
    }

    /* the objects are written as their messages come, unless a later
       call refers to this answer */

    if (!ngx_http_mail_plus_jmap_referenced(call)) {
        g->text = ngx_palloc(g->pool, sizeof(ngx_http_mail_plus_jmap_text_t));
        if (g->text == NULL) {
            json_decref(g->not_found);
            return NGX_ERROR;
        }

        ngx_http_mail_plus_jmap_text_init(g->text, g->pool);
    }

    if (!thread) {
        rc = ngx_http_mail_plus_jmap_get_props(call, g);
        if (rc != NGX_OK) {
            json_decref(g->not_found);
            return rc == NGX_DECLINED ? NGX_OK : NGX_ERROR;
        }
    }

    ids = json_object_get(call->args, "ids");

    rc = ngx_http_mail_plus_jmap_get_ids(call, g, ids);
    if (rc != NGX_OK) {
        json_decref(g->not_found);
        return rc == NGX_DECLINED ? NGX_OK : NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, call->request->connection->log, 0,
                   "http jmap email: %s of %ui ids",
                   thread ? "Thread/get" : "Email/get", g->nmsgs);

    if (g->nmsgs == 0) {
        return ngx_http_mail_plus_jmap_get_answer(g);
    }

    call->cancel = ngx_http_mail_plus_jmap_get_cancel;

    rc = ngx_http_mail_plus_jmap_mailboxes(call,
                                     ngx_http_mail_plus_jmap_get_mailboxes);
    if (rc == NGX_AGAIN) {
        return NGX_AGAIN;
    }

    if (rc != NGX_OK) {
        json_decref(g->not_found);
        g->not_found = NULL;
        return NGX_ERROR;
    }

    if (ngx_http_mail_plus_jmap_get_resolve(g) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_mail_plus_jmap_get_next(g);

    if (rc == NGX_ERROR) {
        json_decref(g->not_found);
        g->not_found = NULL;
    }

    return rc;
}


/*
 * a "properties" list: strings, each a name of one of the two tables
 * (the second may be NULL) or a header property ("header:...") the MIME
 * part knows; NGX_DECLINED for anything else
 */

static ngx_int_t
ngx_http_mail_plus_jmap_known_props(ngx_pool_t *pool, json_t *list,
    const char **names, const char **more)
{
    json_t       *p, *empty;
    size_t        i;
    ngx_uint_t    k;
    const char   *s, **t;
    ngx_array_t   none;

    if (!json_is_array(list)) {
        return NGX_DECLINED;
    }

    ngx_memzero(&none, sizeof(ngx_array_t));
    none.pool = pool;
    none.size = sizeof(ngx_http_mail_plus_jmap_header_t);

    json_array_foreach(list, i, p) {
        s = json_string_value(p);
        if (s == NULL) {
            return NGX_DECLINED;
        }

        for (t = names; t; t = (t == names) ? more : NULL) {
            for (k = 0; t[k]; k++) {
                if (ngx_strcmp(s, t[k]) == 0) {
                    goto known;
                }
            }
        }

        /* an empty header list answers what a known header property is */

        empty = ngx_http_mail_plus_jmap_mime_property(pool, &none, s);
        if (empty == NULL) {
            return NGX_DECLINED;
        }

        json_decref(empty);

    known:

        continue;
    }

    return NGX_OK;
}


/* properties, bodyProperties, the fetch* and maxBodyValueBytes */

static ngx_int_t
ngx_http_mail_plus_jmap_get_props(ngx_http_mail_plus_jmap_call_t *call,
    ngx_http_mail_plus_jmap_get_t *g)
{
    json_t      *v, *p;
    size_t       i, len;
    ngx_uint_t   k, all;
    const char  *s;

    v = json_object_get(call->args, "properties");

    if (v && !json_is_null(v)) {
        if (ngx_http_mail_plus_jmap_known_props(g->pool, v,
                                  ngx_http_mail_plus_jmap_default_props,
                                  ngx_http_mail_plus_jmap_other_props)
            != NGX_OK)
        {
            goto invalid;
        }

        g->props = v;
    }

    v = json_object_get(call->args, "bodyProperties");

    if (v && !json_is_null(v)) {
        if (ngx_http_mail_plus_jmap_known_props(g->pool, v,
                                  ngx_http_mail_plus_jmap_body_props, NULL)
            != NGX_OK)
        {
            goto invalid;
        }

        g->body_props = v;
    }

#define ngx_jmap_flag(name, field)                                            \
    v = json_object_get(call->args, name);                                    \
    if (v && !json_is_boolean(v)) {                                           \
        goto invalid;                                                         \
    }                                                                         \
    g->field = json_is_true(v);

    ngx_jmap_flag("fetchTextBodyValues", text_values)
    ngx_jmap_flag("fetchHTMLBodyValues", html_values)
    ngx_jmap_flag("fetchAllBodyValues", all_values)

#undef ngx_jmap_flag

    v = json_object_get(call->args, "maxBodyValueBytes");

    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            goto invalid;
        }

        g->max_bytes = (size_t) json_integer_value(v);
    }

    /* what the FETCH needs */

    if (g->props == NULL) {
        g->want_headers = 1;
        g->want_structure = 1;
        g->want_preview = 1;
        g->raw_values = (g->text != NULL);
        return NGX_OK;
    }

    all = 0;
    len = sizeof(" BODY.PEEK[HEADER.FIELDS ()]");

    json_array_foreach(g->props, i, p) {
        s = json_string_value(p);

        for (k = 0; ngx_http_mail_plus_jmap_hprops[k].prop; k++) {
            if (ngx_strcmp(s, ngx_http_mail_plus_jmap_hprops[k].prop) == 0) {
                g->want_headers = 1;
                len += ngx_strlen(ngx_http_mail_plus_jmap_hprops[k].field) + 1;
            }
        }

        if (ngx_strcmp(s, "headers") == 0
            || ngx_strncmp(s, "header:", 7) == 0)
        {
            g->want_headers = 1;
            all = 1;
        }

        if (ngx_strcmp(s, "bodyStructure") == 0
            || ngx_strcmp(s, "textBody") == 0
            || ngx_strcmp(s, "htmlBody") == 0
            || ngx_strcmp(s, "attachments") == 0
            || ngx_strcmp(s, "hasAttachment") == 0
            || ngx_strcmp(s, "bodyValues") == 0)
        {
            g->want_structure = 1;
        }

        if (ngx_strcmp(s, "bodyValues") == 0 && g->text) {
            g->raw_values = 1;
        }

        if (ngx_strcmp(s, "preview") == 0) {
            g->want_preview = 1;
            g->want_structure = 1;
        }
    }

    if (!g->want_headers || all) {
        return NGX_OK;
    }

    return ngx_http_mail_plus_jmap_get_fields(g, len);

invalid:

    call->error = "invalidArguments";
    call->description = "properties, bodyProperties, fetch*BodyValues or "
                        "maxBodyValueBytes";

    return NGX_DECLINED;
}


/* only the fields of the header properties asked (len: the room the
   items take): the backend's cache may hold them, and less to read */

static ngx_int_t
ngx_http_mail_plus_jmap_get_fields(ngx_http_mail_plus_jmap_get_t *g,
    size_t len)
{
    u_char      *q;
    json_t      *p;
    size_t       i;
    ngx_uint_t   k;
    const char  *s, *field;

    g->fields.data = ngx_pnalloc(g->pool, len);
    if (g->fields.data == NULL) {
        return NGX_ERROR;
    }

    q = ngx_cpymem(g->fields.data, " BODY.PEEK[HEADER.FIELDS (",
                   sizeof(" BODY.PEEK[HEADER.FIELDS (") - 1);

    json_array_foreach(g->props, i, p) {
        s = json_string_value(p);

        for (k = 0; ngx_http_mail_plus_jmap_hprops[k].prop; k++) {
            if (ngx_strcmp(s, ngx_http_mail_plus_jmap_hprops[k].prop) == 0) {
                if (q[-1] != '(') {
                    *q++ = ' ';
                }

                field = ngx_http_mail_plus_jmap_hprops[k].field;
                q = ngx_cpymem(q, field, ngx_strlen(field));
            }
        }
    }

    *q++ = ')';
    *q++ = ']';
    *q = '\0';

    g->fields.len = q - g->fields.data;

    return NGX_OK;
}


/* the ids: ours of the kind asked, once each; others notFound */

static ngx_int_t
ngx_http_mail_plus_jmap_get_ids(ngx_http_mail_plus_jmap_call_t *call,
    ngx_http_mail_plus_jmap_get_t *g, json_t *ids)
{
    json_t                            *v, *seen;
    size_t                             i;
    ngx_str_t                          id;
    const char                        *s, *r;
    ngx_http_mail_plus_jmap_msg_t     *m;
    ngx_http_mail_plus_jmap_loc_conf_t  *lc;

    lc = ngx_http_get_module_loc_conf(call->request,
                                      ngx_http_mail_plus_jmap_module);

    if (ids == NULL || json_is_null(ids)) {
        call->error = "requestTooLarge";
        call->description = "ids: null (all) is not served: ask Email/query";
        return NGX_DECLINED;
    }

    if (!json_is_array(ids)) {
        call->error = "invalidArguments";
        call->description = "ids: not an array";
        return NGX_DECLINED;
    }

    if (json_array_size(ids) > lc->max_objects_in_get) {
        call->error = "requestTooLarge";
        call->description = "ids: more than maxObjectsInGet";
        return NGX_DECLINED;
    }

    json_array_foreach(ids, i, v) {
        if (!json_is_string(v) || json_string_length(v) == 0
            || json_string_length(v) > 255)
        {
            call->error = "invalidArguments";
            call->description = "ids: not an array of ids";
            return NGX_DECLINED;
        }
    }

    g->msgs = ngx_pcalloc(g->pool, (json_array_size(ids) + 1)
                                   * sizeof(ngx_http_mail_plus_jmap_msg_t));
    seen = json_object();

    if (g->msgs == NULL || seen == NULL) {
        json_decref(seen);
        return NGX_ERROR;
    }

    json_array_foreach(ids, i, v) {
        s = json_string_value(v);

        if (json_object_get(seen, s)) {
            continue;
        }

        json_object_set_new(seen, s, json_true());

        r = s;

        if (s[0] == '#') {
            r = ngx_http_mail_plus_jmap_id(call->ctx, s);
        }

        m = &g->msgs[g->nmsgs];
        m->id = s;

        if (r) {
            id.data = (u_char *) r;
            id.len = ngx_strlen(r);

            if (ngx_http_mail_plus_jmap_ref(g->pool, &id, &m->ref)
                == (g->thread ? 'T' : 'E'))
            {
                g->nmsgs++;
                continue;
            }
        }

        if (json_array_append_new(g->not_found, json_string(s)) != 0) {
            json_decref(seen);
            return NGX_ERROR;
        }
    }

    json_decref(seen);

    return NGX_OK;
}


static void
ngx_http_mail_plus_jmap_get_mailboxes(ngx_http_mail_plus_jmap_call_t *call)
{
    ngx_int_t                       rc;
    ngx_http_mail_plus_jmap_get_t  *g;

    g = call->data;

    if (call->ctx->mailboxes == NULL) {
        if (call->error == NULL) {
            call->error = "serverFail";
        }

        json_decref(g->not_found);
        g->not_found = NULL;
        ngx_http_mail_plus_jmap_done(call);
        return;
    }

    rc = ngx_http_mail_plus_jmap_get_resolve(g);

    if (rc == NGX_OK) {
        rc = ngx_http_mail_plus_jmap_get_next(g);
    }

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc == NGX_ERROR) {
        call->error = "serverFail";
        json_decref(g->not_found);
        g->not_found = NULL;
    }

    ngx_http_mail_plus_jmap_done(call);
}


/* each id's mailbox, by its id and UIDVALIDITY; then sorted by mailbox
   and UID, the unknown first */

static ngx_int_t
ngx_http_mail_plus_jmap_get_resolve(ngx_http_mail_plus_jmap_get_t *g)
{
    u_char                           id[17];
    uint32_t                        *uids;
    ngx_uint_t                       i, one;
    ngx_http_mail_plus_jmap_msg_t   *m;

    for (i = 0; i < g->nmsgs; i++) {
        m = &g->msgs[i];

        id[0] = 'M';
        ngx_memcpy(id + 1, m->ref.mailbox, 16);

        m->mailbox = ngx_http_mail_plus_jmap_mailbox_find(
                                                  g->call->ctx->mailboxes, id);

        if (m->mailbox && (m->mailbox->noselect
                           || m->mailbox->uidvalidity != m->ref.uidvalidity))
        {
            m->mailbox = NULL;
        }
    }

    /* a page of one mailbox, each written as it comes: it may be one
       read ahead, and may have one after it to read ahead */

    one = (g->text && !g->thread && g->nmsgs
           && json_array_size(g->not_found) == 0);

    for (i = 0; one && i < g->nmsgs; i++) {
        if (g->msgs[i].mailbox == NULL
            || g->msgs[i].mailbox != g->msgs[0].mailbox
            || g->msgs[i].ref.uid > NGX_MAX_UINT32_VALUE)
        {
            one = 0;
        }
    }

    if (one && g->nmsgs > 1 && g->call->finish == NULL) {
        g->order = ngx_palloc(g->pool, g->nmsgs * sizeof(uint32_t));
        if (g->order == NULL) {
            return NGX_ERROR;
        }

        for (i = 0; i < g->nmsgs; i++) {
            g->order[i] = (uint32_t) g->msgs[i].ref.uid;
        }
    }

    ngx_qsort(g->msgs, g->nmsgs, sizeof(ngx_http_mail_plus_jmap_msg_t),
              ngx_http_mail_plus_jmap_msg_cmp);

    g->next = 0;
    g->end = 0;

    if (!one || g->call->finish) {
        return NGX_OK;
    }

    uids = ngx_palloc(g->pool, g->nmsgs * sizeof(uint32_t));
    if (uids == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < g->nmsgs; i++) {
        uids[i] = (uint32_t) g->msgs[i].ref.uid;
    }

    switch (ngx_http_mail_plus_jmap_ahead_take(g->call, g->msgs[0].mailbox,
                                               uids, g->nmsgs, g->text))
    {
    case NGX_OK:
        break;

    case NGX_DECLINED:
        return NGX_OK;

    default:
        return NGX_ERROR;
    }

    /* every object written already: the answer is next */

    for (i = 0; i < g->nmsgs; i++) {
        g->msgs[i].found = 1;
        g->msgs[i].written = 1;
    }

    g->end = g->nmsgs;

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_http_mail_plus_jmap_msg_cmp(const void *one, const void *two)
{
    const ngx_http_mail_plus_jmap_msg_t  *a = one, *b = two;

    if (a->mailbox != b->mailbox) {
        return (uintptr_t) a->mailbox < (uintptr_t) b->mailbox ? -1 : 1;
    }

    if (a->ref.uid != b->ref.uid) {
        return a->ref.uid < b->ref.uid ? -1 : 1;
    }

    return 0;
}


/* the next mailbox's run: EXAMINE and UID FETCH; NGX_OK when all are
   done (the answer is set) */

static ngx_int_t
ngx_http_mail_plus_jmap_get_next(ngx_http_mail_plus_jmap_get_t *g)
{
    u_char                             *p;
    ngx_uint_t                          i, run;
    ngx_str_t                           set;
    ngx_mail_plus_imap_t               *imap;
    ngx_mail_plus_imap_cmd_t           *cmd;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    g->next = g->end;

    while (g->next < g->nmsgs && g->msgs[g->next].mailbox == NULL) {
        g->next++;
    }

    if (g->next == g->nmsgs) {
        return ngx_http_mail_plus_jmap_get_answer(g);
    }

    mb = g->msgs[g->next].mailbox;

    for (g->end = g->next;
         g->end < g->nmsgs && g->msgs[g->end].mailbox == mb;
         g->end++)
    { /* void */ }

    /* the UID set, runs as "a:b" */

    set.data = ngx_pnalloc(g->pool, (g->end - g->next) * (2 * NGX_INT64_LEN
                                                            + 2));
    if (set.data == NULL) {
        return NGX_ERROR;
    }

    p = set.data;

    for (i = g->next; i < g->end; i = run + 1) {
        for (run = i;
             run + 1 < g->end
             && g->msgs[run + 1].ref.uid <= g->msgs[run].ref.uid + 1;
             run++)
        { /* void */ }

        if (p != set.data) {
            *p++ = ',';
        }

        p = ngx_sprintf(p, "%uL", g->msgs[i].ref.uid);

        if (run != i) {
            p = ngx_sprintf(p, ":%uL", g->msgs[run].ref.uid);
        }
    }

    set.len = p - set.data;

    imap = ngx_http_mail_plus_jmap_imap(g->call->ctx);
    if (imap == NULL) {
        return NGX_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, g->call->request->connection->log, 0,
                   "http jmap email: fetch %ui in \"%*s\"",
                   g->end - g->next, (size_t) 17, mb->id);

    if (imap->selected.len != mb->path.len
        || ngx_strncmp(imap->selected.data, mb->path.data, mb->path.len) != 0)
    {
        cmd = ngx_mail_plus_imap_cmd(imap, g->pool);
        if (cmd == NULL
            || ngx_mail_plus_imap_cmd_text(cmd, "EXAMINE ") != NGX_OK
            || ngx_mail_plus_imap_cmd_mailbox(cmd, &mb->path) != NGX_OK)
        {
            return NGX_ERROR;
        }

        cmd->handler = ngx_http_mail_plus_jmap_examined;
        cmd->data = g;

        if (ngx_mail_plus_imap_send(cmd) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    cmd = ngx_mail_plus_imap_cmd(imap, g->pool);
    if (cmd == NULL
        || ngx_mail_plus_imap_cmd_text(cmd, "UID FETCH %V (UID FLAGS%s%s%s%s)",
                                       &set,
                                       g->thread ? ""
                                       : " INTERNALDATE RFC822.SIZE",
                                       g->want_structure
                                       ? " BODYSTRUCTURE" : "",
                                       !g->want_headers ? ""
                                       : g->fields.len
                                       ? (char *) g->fields.data
                                       : " BODY.PEEK[HEADER]",
                                       g->want_preview ? " PREVIEW" : "")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    cmd->handler = ngx_http_mail_plus_jmap_get_fetched;
    cmd->data = g;

    if (ngx_mail_plus_imap_send(cmd) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


/* the FETCH after it checks what was selected */

static void
ngx_http_mail_plus_jmap_examined(ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, cmd->imap->log, 0,
                   "http jmap email: EXAMINE answered %i", cmd->rc);
}


static void
ngx_http_mail_plus_jmap_get_fetched(ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_uint_t                          i, k;
    ngx_mail_plus_imap_t               *imap;
    ngx_mail_plus_imap_value_t         *list;
    ngx_http_mail_plus_jmap_msg_t      *m;
    ngx_http_mail_plus_jmap_get_t      *g;
    ngx_mail_plus_imap_response_t     **resp;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    g = cmd->data;
    imap = cmd->imap;
    mb = g->msgs[g->next].mailbox;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, imap->log, 0,
                   "http jmap email: FETCH answered %i, %ui untagged",
                   cmd->rc, cmd->untagged.nelts);

    if (cmd->rc != NGX_OK) {
        g->call->error = "serverFail";
        g->call->description = imap->error;
        json_decref(g->not_found);
        g->not_found = NULL;
        ngx_http_mail_plus_jmap_done(g->call);
        return;
    }

    /* the mailbox is gone, or has another UIDVALIDITY: not found */

    if (cmd->status != NGX_MAIL_PLUS_IMAP_OK
        || imap->selected.len != mb->path.len
        || ngx_strncmp(imap->selected.data, mb->path.data, mb->path.len) != 0
        || imap->uidvalidity != g->msgs[g->next].ref.uidvalidity)
    {
        ngx_http_mail_plus_jmap_get_continue(g);
        return;
    }

    resp = cmd->untagged.elts;

    for (i = 0; i < cmd->untagged.nelts; i++) {
        m = ngx_http_mail_plus_jmap_get_msg(g, g->next, g->end, resp[i],
                                            &list);
        if (m == NULL) {
            continue;
        }

        m->found = 1;

        for (k = 0; k + 1 < list->nelts; k += 2) {
            ngx_http_mail_plus_jmap_get_item(g, m, list->items[k],
                                             list->items[k + 1]);
        }
    }

    for (i = g->next; i < g->end; i++) {
        m = &g->msgs[i];

        if (m->found && !g->thread
            && ngx_http_mail_plus_jmap_get_wants(g, m) != NGX_OK)
        {
            g->call->error = "serverFail";
            json_decref(g->not_found);
            g->not_found = NULL;
            ngx_http_mail_plus_jmap_done(g->call);
            return;
        }
    }

    switch (ngx_http_mail_plus_jmap_get_bodies(g)) {

    case NGX_AGAIN:

        /* the body FETCH goes out when this handler returns: the objects
           are then written but their values while the backend works */

        if (g->text && !g->thread && !g->early_ev.posted) {
            g->early_ev.handler = ngx_http_mail_plus_jmap_get_early;
            g->early_ev.data = g;
            g->early_ev.log = g->call->request->connection->log;

            ngx_post_event(&g->early_ev, &ngx_posted_events);
        }

        return;

    case NGX_OK:
        ngx_http_mail_plus_jmap_get_continue(g);
        return;

    default:
        g->call->error = "serverFail";
        json_decref(g->not_found);
        g->not_found = NULL;
        ngx_http_mail_plus_jmap_done(g->call);
    }
}


/* a FETCH response's message among the run (by its UID), and its list */

static ngx_http_mail_plus_jmap_msg_t *
ngx_http_mail_plus_jmap_get_msg(ngx_http_mail_plus_jmap_get_t *g,
    ngx_uint_t first, ngx_uint_t last, ngx_mail_plus_imap_response_t *resp,
    ngx_mail_plus_imap_value_t **list)
{
    uint64_t                     uid;
    ngx_uint_t                   k, lo, hi, mid;
    ngx_mail_plus_imap_value_t  *l;

    if (resp->kind != NGX_MAIL_PLUS_IMAP_UNTAGGED
        || resp->status != NGX_MAIL_PLUS_IMAP_DATA
        || resp->name.len != 5
        || ngx_strncasecmp(resp->name.data, (u_char *) "FETCH", 5) != 0)
    {
        return NULL;
    }

    l = ngx_mail_plus_imap_item(resp->data, 0);

    if (l == NULL || l->type != NGX_MAIL_PLUS_IMAP_LIST) {
        return NULL;
    }

    for (k = 0; k + 1 < l->nelts; k += 2) {
        if (ngx_mail_plus_imap_atom_is(l->items[k], "UID", 3)) {
            break;
        }
    }

    if (k + 1 >= l->nelts
        || ngx_mail_plus_imap_number(l->items[k + 1], &uid) != NGX_OK)
    {
        return NULL;
    }

    lo = first;
    hi = last;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if (g->msgs[mid].ref.uid == uid) {
            *list = l;
            return &g->msgs[mid];
        }

        if (g->msgs[mid].ref.uid < uid) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    return NULL;
}


static void
ngx_http_mail_plus_jmap_get_item(ngx_http_mail_plus_jmap_get_t *g,
    ngx_http_mail_plus_jmap_msg_t *m, ngx_mail_plus_imap_value_t *key,
    ngx_mail_plus_imap_value_t *val)
{
    ngx_str_t  s;

    if (ngx_mail_plus_imap_atom_is(key, "FLAGS", 5)) {
        if (val->type == NGX_MAIL_PLUS_IMAP_LIST) {
            m->flags = val;
        }

    } else if (ngx_mail_plus_imap_atom_is(key, "INTERNALDATE", 12)) {
        (void) ngx_mail_plus_imap_string(val, &m->internaldate);

    } else if (ngx_mail_plus_imap_atom_is(key, "RFC822.SIZE", 11)) {
        (void) ngx_mail_plus_imap_number(val, &m->size);

    } else if (ngx_mail_plus_imap_atom_is(key, "BODYSTRUCTURE", 13)) {
        m->root = ngx_http_mail_plus_jmap_mime_structure(g->pool, val);

        if (m->root
            && ngx_http_mail_plus_jmap_mime_bodies(g->pool, m->root, &m->text,
                                                   &m->html, &m->att)
               != NGX_OK)
        {
            m->root = NULL;
        }

    } else if (ngx_mail_plus_imap_atom_is(key, "BODY[HEADER]", 12)
               || (key->type == NGX_MAIL_PLUS_IMAP_ATOM
                   && key->str.len > 20
                   && ngx_strncasecmp(key->str.data,
                                      (u_char *) "BODY[HEADER.FIELDS (", 20)
                      == 0))
    {
        if (ngx_mail_plus_imap_string(val, &m->header) != NGX_OK) {
            ngx_str_null(&m->header);
        }

    } else if (ngx_mail_plus_imap_atom_is(key, "PREVIEW", 7)) {
        if (ngx_mail_plus_imap_string(val, &s) == NGX_OK && s.len) {
            m->preview = s;
        }
    }
}


/* the parts whose bytes are wanted: body values, a preview's source */

static ngx_int_t
ngx_http_mail_plus_jmap_get_wants(ngx_http_mail_plus_jmap_get_t *g,
    ngx_http_mail_plus_jmap_msg_t *m)
{
    u_char                           *p;
    size_t                            len;
    ngx_uint_t                        i, values;
    ngx_http_mail_plus_jmap_part_t  **parts;
    ngx_http_mail_plus_jmap_want_t   *w;

    if (m->root == NULL) {
        return NGX_OK;
    }

    values = (g->props == NULL);

    if (g->props) {
        for (i = 0; i < json_array_size(g->props); i++) {
            if (ngx_strcmp(json_string_value(json_array_get(g->props, i)),
                           "bodyValues")
                == 0)
            {
                values = 1;
            }
        }
    }

    if (values && (g->text_values || g->all_values)) {
        parts = m->text->elts;

        for (i = 0; i < m->text->nelts; i++) {
            if (ngx_http_mail_plus_jmap_want(g->pool, m, parts[i], 0)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    if (values && (g->html_values || g->all_values)) {
        parts = m->html->elts;

        for (i = 0; i < m->html->nelts; i++) {
            if (ngx_http_mail_plus_jmap_want(g->pool, m, parts[i], 0)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    if (g->want_preview && m->preview.len == 0 && m->text->nelts) {
        parts = m->text->elts;

        if (ngx_http_mail_plus_jmap_want(g->pool, m, parts[0], 1) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (m->wants == NULL) {
        return NGX_OK;
    }

    /* the FETCH items: "BINARY.PEEK[1.2]<0.n> ..." */

    w = m->wants->elts;
    len = 0;

    for (i = 0; i < m->wants->nelts; i++) {
        len += sizeof(" BINARY.PEEK[]<0.>") + w[i].part->part_id.len
               + NGX_INT64_LEN;
    }

    m->items.data = ngx_pnalloc(g->pool, len);
    if (m->items.data == NULL) {
        return NGX_ERROR;
    }

    p = m->items.data;

    for (i = 0; i < m->wants->nelts; i++) {
        if (i) {
            *p++ = ' ';
        }

        p = ngx_sprintf(p, "[%V]", &w[i].part->part_id);

        if (w[i].preview && !w[i].got) {
            p = ngx_sprintf(p, "<0.%uz>",
                            (size_t) NGX_HTTP_MAIL_PLUS_JMAP_PREVIEW_BYTES);

        } else if (g->max_bytes) {
            p = ngx_sprintf(p, "<0.%uz>", g->max_bytes + 4);
        }
    }

    m->items.len = p - m->items.data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mail_plus_jmap_want(ngx_pool_t *pool, ngx_http_mail_plus_jmap_msg_t *m,
    ngx_http_mail_plus_jmap_part_t *part, ngx_uint_t preview)
{
    ngx_uint_t                       i;
    ngx_http_mail_plus_jmap_want_t  *w;

    if (part->type.len != 4 || ngx_strncmp(part->type.data, "text", 4) != 0) {
        return NGX_OK;
    }

    if (m->wants == NULL) {
        m->wants = ngx_array_create(pool, 2,
                                    sizeof(ngx_http_mail_plus_jmap_want_t));
        if (m->wants == NULL) {
            return NGX_ERROR;
        }
    }

    w = m->wants->elts;

    for (i = 0; i < m->wants->nelts; i++) {
        if (w[i].part == part) {
            /* wanted already ("got" marks a value wanted) */
            if (!preview) {
                w[i].got = 1;
            }

            return NGX_OK;
        }
    }

    w = ngx_array_push(m->wants);
    if (w == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(w, sizeof(ngx_http_mail_plus_jmap_want_t));
    w->part = part;
    w->preview = preview;
    w->got = !preview;

    return NGX_OK;
}


/* one UID FETCH for each set of messages that want the same parts */

static ngx_int_t
ngx_http_mail_plus_jmap_get_bodies(ngx_http_mail_plus_jmap_get_t *g)
{
    ngx_uint_t                           i, k;
    ngx_http_mail_plus_jmap_msg_t       *m;
    ngx_http_mail_plus_jmap_body_cmd_t  *bc;

    for (i = g->next; i < g->end; i++) {
        m = &g->msgs[i];

        if (m->items.len == 0 || m->queued) {
            continue;
        }

        bc = ngx_pcalloc(g->pool, sizeof(ngx_http_mail_plus_jmap_body_cmd_t));
        if (bc == NULL) {
            return NGX_ERROR;
        }

        bc->get = g;
        bc->first = i;
        bc->last = i;
        bc->items = m->items;
        bc->binary = g->call->ctx->imap->binary;

        for (k = i; k < g->end; k++) {
            if (g->msgs[k].items.len == m->items.len
                && ngx_strncmp(g->msgs[k].items.data, m->items.data,
                               m->items.len)
                   == 0)
            {
                g->msgs[k].queued = 1;
                bc->last = k;
            }
        }

        if (ngx_http_mail_plus_jmap_body_send(bc) != NGX_OK) {
            return NGX_ERROR;
        }

        g->pending++;
    }

    return g->pending ? NGX_AGAIN : NGX_OK;
}


static ngx_int_t
ngx_http_mail_plus_jmap_body_send(ngx_http_mail_plus_jmap_body_cmd_t *bc)
{
    u_char                         *p, *q, *last;
    size_t                          len;
    ngx_str_t                       set, items;
    ngx_uint_t                      k;
    ngx_mail_plus_imap_cmd_t       *cmd;
    ngx_http_mail_plus_jmap_msg_t  *m;
    ngx_http_mail_plus_jmap_get_t  *g;

    g = bc->get;

    set.data = ngx_pnalloc(g->pool, (bc->last - bc->first + 1)
                                    * (NGX_INT64_LEN + 1));
    if (set.data == NULL) {
        return NGX_ERROR;
    }

    p = set.data;

    for (k = bc->first; k <= bc->last; k++) {
        m = &g->msgs[k];

        if (m->items.len == bc->items.len
            && ngx_strncmp(m->items.data, bc->items.data, m->items.len) == 0)
        {
            if (p != set.data) {
                *p++ = ',';
            }

            p = ngx_sprintf(p, "%uL", m->ref.uid);
        }
    }

    set.len = p - set.data;

    /* "[1]<0.n> [2]" to "BINARY.PEEK[1]<0.n> BINARY.PEEK[2]" (BODY.PEEK
       with the size tripled when we decode) */

    len = bc->items.len * 4 + 64;

    items.data = ngx_pnalloc(g->pool, len);
    if (items.data == NULL) {
        return NGX_ERROR;
    }

    p = items.data;
    q = bc->items.data;
    last = q + bc->items.len;

    while (q < last) {
        p = ngx_cpymem(p, bc->binary ? "BINARY.PEEK" : "BODY.PEEK",
                       bc->binary ? 11 : 9);

        while (q < last && *q != ' ' && *q != '<') {
            *p++ = *q++;
        }

        if (q < last && *q == '<') {
            q += 3;
            len = ngx_atoi(q, ngx_strlchr(q, last, '>') - q);
            p = ngx_sprintf(p, "<0.%uz>", bc->binary ? len : 3 * len);
            q = ngx_strlchr(q, last, '>') + 1;
        }

        if (q < last && *q == ' ') {
            *p++ = *q++;
        }
    }

    items.len = p - items.data;

    cmd = ngx_mail_plus_imap_cmd(g->call->ctx->imap, g->pool);
    if (cmd == NULL
        || ngx_mail_plus_imap_cmd_text(cmd, "UID FETCH %V (UID %V)", &set,
                                       &items)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    cmd->handler = ngx_http_mail_plus_jmap_get_body;
    cmd->untagged_handler = ngx_http_mail_plus_jmap_get_body_one;
    cmd->data = bc;

    return ngx_mail_plus_imap_send(cmd);
}


/*
 * a message's values as they come: once all it wants are in, its object
 * is written (while the backend still sends the others)
 */

static ngx_int_t
ngx_http_mail_plus_jmap_get_body_one(ngx_mail_plus_imap_cmd_t *cmd,
    ngx_mail_plus_imap_response_t *resp)
{
    ngx_str_t                            key;
    ngx_uint_t                           k;
    ngx_mail_plus_imap_value_t          *list;
    ngx_http_mail_plus_jmap_msg_t       *m;
    ngx_http_mail_plus_jmap_get_t       *g;
    ngx_http_mail_plus_jmap_body_cmd_t  *bc;

    bc = cmd->data;
    g = bc->get;

    /* every response is taken: what is not a message's values is of
       no use here (the session's own state is kept by the client) */

    m = ngx_http_mail_plus_jmap_get_msg(g, bc->first, bc->last + 1, resp,
                                        &list);

    if (m == NULL || m->wants == NULL || m->written || g->failed) {
        return NGX_OK;
    }

    for (k = 0; k + 1 < list->nelts; k += 2) {
        if (list->items[k]->type == NGX_MAIL_PLUS_IMAP_ATOM) {
            key = list->items[k]->str;
            ngx_http_mail_plus_jmap_get_value(g, m, &key, list->items[k + 1],
                                              bc->binary);
        }
    }

    if (g->text == NULL || m->values < m->wants->nelts) {
        return NGX_OK;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, cmd->imap->log, 0,
                   "http jmap email: message %uL complete, written",
                   m->ref.uid);

    if (ngx_http_mail_plus_jmap_get_write(g, m, NULL) != NGX_OK) {
        g->failed = 1;
    }

    return NGX_OK;
}


static void
ngx_http_mail_plus_jmap_get_body(ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_uint_t                           i, k;
    ngx_http_mail_plus_jmap_msg_t       *m;
    ngx_http_mail_plus_jmap_get_t       *g;
    ngx_http_mail_plus_jmap_want_t      *w;
    ngx_http_mail_plus_jmap_body_cmd_t  *bc;

    bc = cmd->data;
    g = bc->get;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, cmd->imap->log, 0,
                   "http jmap email: body FETCH answered %i, binary %ui",
                   cmd->rc, bc->binary);

    if (g->early_ev.posted) {
        ngx_delete_posted_event(&g->early_ev);
    }

    if (cmd->rc != NGX_OK || g->failed) {
        g->call->error = "serverFail";
        g->call->description = (cmd->rc != NGX_OK) ? cmd->imap->error
                                                   : NULL;
        json_decref(g->not_found);
        g->not_found = NULL;
        ngx_http_mail_plus_jmap_done(g->call);
        return;
    }

    if (cmd->status != NGX_MAIL_PLUS_IMAP_OK && bc->binary) {

        /* BINARY refused (an unknown transfer encoding): BODY, decoded
           here, for the messages not written yet */

        bc->binary = 0;

        for (i = bc->first; i <= bc->last; i++) {
            m = &g->msgs[i];

            if (m->wants == NULL || m->written) {
                continue;
            }

            m->values = 0;
            w = m->wants->elts;

            for (k = 0; k < m->wants->nelts; k++) {
                w[k].came = 0;
            }
        }

        if (ngx_http_mail_plus_jmap_body_send(bc) != NGX_OK) {
            g->call->error = "serverFail";
            json_decref(g->not_found);
            g->not_found = NULL;
            ngx_http_mail_plus_jmap_done(g->call);
        }

        return;
    }

    /* the values were taken as they came (get_body_one) */

    if (--g->pending == 0) {
        ngx_http_mail_plus_jmap_get_continue(g);
    }
}


/*
 * the objects of the messages whose values are on their way, but those
 * values: the work done while the backend reads the bodies, each object
 * later copied behind its values (a preview made from them waits too)
 */

static void
ngx_http_mail_plus_jmap_get_early(ngx_event_t *ev)
{
    json_t                         *o;
    ngx_int_t                       rc;
    ngx_uint_t                      i, n;
    ngx_http_mail_plus_jmap_msg_t  *m;
    ngx_http_mail_plus_jmap_get_t  *g;

    g = ev->data;

    if (g->early.pool == NULL) {
        ngx_http_mail_plus_jmap_text_init(&g->early, g->pool);
    }

    n = 0;

    for (i = g->next; i < g->end && !g->failed; i++) {
        m = &g->msgs[i];

        if (!m->found || m->wants == NULL || m->written || m->object.len
            || (g->want_preview && m->preview.len == 0))
        {
            continue;
        }

        o = ngx_http_mail_plus_jmap_get_email(g, m);
        if (o == NULL) {
            g->failed = 1;
            break;
        }

        rc = ngx_http_mail_plus_jmap_text_piece(&g->early, o, &m->object);

        json_decref(o);

        if (rc != NGX_OK) {
            ngx_str_null(&m->object);
            g->failed = 1;
            break;
        }

        n++;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "http jmap email: %ui objects written early, failed %ui",
                   n, (ngx_uint_t) g->failed);
}


/* "BINARY[1.2]<0>" or "BODY[1.2]<0>" and its bytes, to the part's text */

static void
ngx_http_mail_plus_jmap_get_value(ngx_http_mail_plus_jmap_get_t *g,
    ngx_http_mail_plus_jmap_msg_t *m, ngx_str_t *key,
    ngx_mail_plus_imap_value_t *val, ngx_uint_t binary)
{
    u_char                          *p, *last, *end;
    size_t                           asked;
    ngx_str_t                        part, bytes;
    ngx_uint_t                       i;
    ngx_http_mail_plus_jmap_want_t  *w;

    p = key->data;
    last = p + key->len;

    p = ngx_strlchr(p, last, '[');
    if (p == NULL) {
        return;
    }

    end = ngx_strlchr(p, last, ']');
    if (end == NULL) {
        return;
    }

    part.data = p + 1;
    part.len = end - part.data;

    if (ngx_mail_plus_imap_string(val, &bytes) != NGX_OK) {
        ngx_str_set(&bytes, "");
    }

    w = m->wants->elts;

    for (i = 0; i < m->wants->nelts; i++) {
        if (w[i].part->part_id.len != part.len
            || ngx_strncmp(w[i].part->part_id.data, part.data, part.len) != 0)
        {
            continue;
        }

        if (!w[i].came) {
            w[i].came = 1;
            m->values++;
        }

        if (ngx_http_mail_plus_jmap_mime_decode(g->pool, &bytes,
                                                &w[i].part->encoding,
                                                &w[i].part->charset, binary,
                                                &w[i].utf8, &w[i].problem)
            != NGX_OK)
        {
            ngx_str_null(&w[i].utf8);
            return;
        }

        /* cut short by the partial FETCH: possibly more */

        asked = (w[i].preview && !w[i].got)
                ? NGX_HTTP_MAIL_PLUS_JMAP_PREVIEW_BYTES
                : g->max_bytes ? g->max_bytes + 4 : 0;

        if (!binary) {
            asked *= 3;
        }

        if (asked && bytes.len >= asked && w[i].part->size > asked) {
            w[i].truncated = 1;
        }

        return;
    }
}


/* the run is done: the next one */

static void
ngx_http_mail_plus_jmap_get_continue(ngx_http_mail_plus_jmap_get_t *g)
{
    ngx_int_t  rc;

    rc = ngx_http_mail_plus_jmap_get_next(g);

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc == NGX_ERROR) {
        g->call->error = "serverFail";
        json_decref(g->not_found);
        g->not_found = NULL;
    }

    ngx_http_mail_plus_jmap_done(g->call);
}


/* the answer: list, notFound, state */

static ngx_int_t
ngx_http_mail_plus_jmap_get_answer(ngx_http_mail_plus_jmap_get_t *g)
{
    json_t                         *list;
    ngx_str_t                       state;
    ngx_uint_t                      i;
    ngx_http_mail_plus_jmap_msg_t  *m;

    list = json_array();
    if (list == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < g->nmsgs; i++) {
        m = &g->msgs[i];

        if (!m->found) {
            if (json_array_append_new(g->not_found, json_string(m->id))
                != 0)
            {
                goto failed;
            }

            continue;
        }

        if (!m->written
            && ngx_http_mail_plus_jmap_get_write(g, m, list) != NGX_OK)
        {
            goto failed;
        }
    }

    if (g->call->ctx->mailboxes) {
        if (ngx_http_mail_plus_jmap_email_state(g->pool,
                                                g->call->ctx->mailboxes,
                                                &state)
            != NGX_OK)
        {
            goto failed;
        }

    } else {
        ngx_str_set(&state, "S");
    }

    if (g->text) {
        json_decref(list);

        g->call->result = json_pack("{s:s%,s:s%,s:o}",
                                    "accountId",
                                    (char *) g->call->ctx->account_id.data,
                                    g->call->ctx->account_id.len,
                                    "state", (char *) state.data, state.len,
                                    "notFound", g->not_found);
        g->call->list = g->text;

    } else {
        g->call->result = json_pack("{s:s%,s:s%,s:o,s:o}",
                                    "accountId",
                                    (char *) g->call->ctx->account_id.data,
                                    g->call->ctx->account_id.len,
                                    "state", (char *) state.data, state.len,
                                    "list", list, "notFound", g->not_found);
    }

    g->not_found = NULL;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, g->call->request->connection->log, 0,
                   "http jmap email: get answered, %ui asked", g->nmsgs);

    if (g->order && g->call->result) {
        for (i = 0; i < g->nmsgs && g->msgs[i].found; i++) { /* void */ }

        if (i == g->nmsgs) {
            ngx_http_mail_plus_jmap_ahead_plan(g->call, g->msgs[0].mailbox,
                                               g->order, g->nmsgs);
        }
    }

    return g->call->result ? NGX_OK : NGX_ERROR;

failed:

    json_decref(list);

    return NGX_ERROR;
}


/* a message's object: written into the answer's text, or into list */

static ngx_int_t
ngx_http_mail_plus_jmap_get_write(ngx_http_mail_plus_jmap_get_t *g,
    ngx_http_mail_plus_jmap_msg_t *m, json_t *list)
{
    json_t     *o;
    ngx_int_t   rc;
    ngx_str_t   tail;

    if (m->object.len) {
        o = NULL;                               /* written early */

    } else if (g->thread) {
        if (ngx_http_mail_plus_jmap_ref_id(g->pool, 'E', &m->ref, &tail)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        o = json_pack("{s:s,s:[s%]}", "id", m->id, "emailIds",
                      (char *) tail.data, tail.len);

    } else {
        o = ngx_http_mail_plus_jmap_get_email(g, m);
    }

    if (o == NULL && m->object.len == 0) {
        return NGX_ERROR;
    }

    m->written = 1;

    if (g->text == NULL) {
        return json_array_append_new(list, o) == 0 ? NGX_OK : NGX_ERROR;
    }

    rc = NGX_OK;

    if (g->text->items++) {
        rc = ngx_http_mail_plus_jmap_text_raw(g->text, ",", 1);
    }

    if (g->raw_values && !g->thread) {

        /* {"bodyValues":{...}, then the object's other members: it has
           its "id" at least, so it is never "{}" */

        if (rc == NGX_OK) {
            rc = ngx_http_mail_plus_jmap_values_text(g, m);
        }

        if (rc == NGX_OK) {
            rc = ngx_http_mail_plus_jmap_text_raw(g->text, ",", 1);
        }

        if (rc == NGX_OK) {
            rc = (o == NULL)
                 ? ngx_http_mail_plus_jmap_text_raw(g->text,
                                                    (char *) m->object.data + 1,
                                                    m->object.len - 1)
                 : ngx_http_mail_plus_jmap_text_json(g->text, o, 1);
        }

    } else if (rc == NGX_OK) {
        rc = (o == NULL)
             ? ngx_http_mail_plus_jmap_text_raw(g->text,
                                                (char *) m->object.data,
                                                m->object.len)
             : ngx_http_mail_plus_jmap_text_json(g->text, o, 0);
    }

    if (o) {
        json_decref(o);
    }

    return rc;
}


static json_t *
ngx_http_mail_plus_jmap_get_email(ngx_http_mail_plus_jmap_get_t *g,
    ngx_http_mail_plus_jmap_msg_t *m)
{
    u_char      *p;
    json_t      *o, *v, *prop;
    size_t       i;
    ngx_str_t    id, tail;
    ngx_uint_t   k;
    const char  *s;

    if (ngx_http_mail_plus_jmap_ref_id(g->pool, 'E', &m->ref, &id) != NGX_OK) {
        return NULL;
    }

    /* the email id without its kind: "<mailbox>-<uidvalidity>-<uid>" */

    p = id.data + 1;
    tail.data = p;
    tail.len = id.len - 1;

    if (g->want_headers && m->headers == NULL) {
        m->headers = ngx_http_mail_plus_jmap_mime_headers(g->pool, &m->header);
        if (m->headers == NULL) {
            return NULL;
        }
    }

    o = json_object();
    if (o == NULL) {
        return NULL;
    }

    json_object_set_new(o, "id", json_stringn((char *) id.data, id.len));

    if (g->props == NULL) {
        for (k = 0; ngx_http_mail_plus_jmap_default_props[k]; k++) {
            s = ngx_http_mail_plus_jmap_default_props[k];

            if (g->raw_values && ngx_strcmp(s, "bodyValues") == 0) {
                continue;
            }

            v = ngx_http_mail_plus_jmap_get_prop(g, m, s, &tail);

            if (v == NULL || json_object_set_new(o, s, v) != 0) {
                json_decref(o);
                return NULL;
            }
        }

        return o;
    }

    json_array_foreach(g->props, i, prop) {
        s = json_string_value(prop);

        if (ngx_strcmp(s, "id") == 0
            || (g->raw_values && ngx_strcmp(s, "bodyValues") == 0))
        {
            continue;
        }

        v = ngx_http_mail_plus_jmap_get_prop(g, m, s, &tail);

        if (v == NULL || json_object_set_new(o, s, v) != 0) {
            json_decref(o);
            return NULL;
        }
    }

    return o;
}


static json_t *
ngx_http_mail_plus_jmap_get_prop(ngx_http_mail_plus_jmap_get_t *g,
    ngx_http_mail_plus_jmap_msg_t *m, const char *prop, ngx_str_t *tail)
{
    u_char      date[32];
    json_t     *v;
    time_t      t;
    ngx_uint_t  k;

    if (ngx_strcmp(prop, "id") == 0) {
        return json_pack("s+#", "E", (char *) tail->data, (int) tail->len);
    }

    if (ngx_strcmp(prop, "blobId") == 0) {
        return json_pack("s+#", "B", (char *) tail->data, (int) tail->len);
    }

    if (ngx_strcmp(prop, "threadId") == 0) {
        return json_pack("s+#", "T", (char *) tail->data, (int) tail->len);
    }

    if (ngx_strcmp(prop, "mailboxIds") == 0) {
        v = json_object();

        if (v && json_object_setn_new(v, (char *) m->mailbox->id, 17,
                                      json_true())
                 != 0)
        {
            json_decref(v);
            return NULL;
        }

        return v;
    }

    if (ngx_strcmp(prop, "keywords") == 0) {
        return ngx_http_mail_plus_jmap_keywords(m->flags);
    }

    if (ngx_strcmp(prop, "size") == 0) {
        return json_integer((json_int_t) m->size);
    }

    if (ngx_strcmp(prop, "receivedAt") == 0) {
        if (ngx_http_mail_plus_jmap_mime_internaldate(&m->internaldate, date,
                                                      &t)
            != NGX_OK)
        {
            return json_null();
        }

        return json_stringn((char *) date, 20);
    }

    if (ngx_strcmp(prop, "headers") == 0) {
        return ngx_http_mail_plus_jmap_mime_header_list(m->headers);
    }

    for (k = 0; ngx_http_mail_plus_jmap_hprops[k].prop; k++) {
        if (ngx_strcmp(prop, ngx_http_mail_plus_jmap_hprops[k].prop) == 0) {
            return ngx_http_mail_plus_jmap_mime_field(g->pool, m->headers,
                                   ngx_http_mail_plus_jmap_hprops[k].field,
                                   ngx_http_mail_plus_jmap_hprops[k].form);
        }
    }

    if (ngx_strncmp(prop, "header:", 7) == 0) {
        return ngx_http_mail_plus_jmap_mime_property(g->pool, m->headers,
                                                     prop);
    }

    if (m->root == NULL) {
        /* no structure (none asked, or one we could not read) */

        if (ngx_strcmp(prop, "hasAttachment") == 0) {
            return json_false();
        }

        if (ngx_strcmp(prop, "preview") == 0) {
            return json_string("");
        }

        if (ngx_strcmp(prop, "bodyValues") == 0) {
            return json_object();
        }

        if (ngx_strcmp(prop, "bodyStructure") == 0) {
            return json_null();
        }

        return json_array();
    }

    if (ngx_strcmp(prop, "bodyStructure") == 0) {
        return ngx_http_mail_plus_jmap_mime_part_json(g->pool, m->root,
                                                      g->body_props, tail);
    }

    if (ngx_strcmp(prop, "textBody") == 0) {
        return ngx_http_mail_plus_jmap_parts(g, m->text, tail);
    }

    if (ngx_strcmp(prop, "htmlBody") == 0) {
        return ngx_http_mail_plus_jmap_parts(g, m->html, tail);
    }

    if (ngx_strcmp(prop, "attachments") == 0) {
        return ngx_http_mail_plus_jmap_parts(g, m->att, tail);
    }

    if (ngx_strcmp(prop, "hasAttachment") == 0) {
        return json_boolean(ngx_http_mail_plus_jmap_has_attachment(m));
    }

    if (ngx_strcmp(prop, "bodyValues") == 0) {
        return ngx_http_mail_plus_jmap_values(g, m);
    }

    if (ngx_strcmp(prop, "preview") == 0) {
        if (m->preview.len) {
            return ngx_http_mail_plus_jmap_mime_preview(&m->preview);
        }

        if (m->wants) {
            for (k = 0; k < m->wants->nelts; k++) {
                ngx_http_mail_plus_jmap_want_t  *w = m->wants->elts;

                if (w[k].part == ((void **) m->text->elts)[0]
                    && w[k].utf8.data)
                {
                    return ngx_http_mail_plus_jmap_mime_preview(&w[k].utf8);
                }
            }
        }

        return json_string("");
    }

    return json_null();
}


/* IMAP flags to JMAP keywords: \Seen, \Flagged, \Answered, \Draft as
   "$seen"...; other system flags dropped; keywords lower-cased */

static json_t *
ngx_http_mail_plus_jmap_keywords(ngx_mail_plus_imap_value_t *flags)
{
    u_char      buf[256];
    json_t     *o;
    ngx_str_t   s;
    ngx_uint_t  i;

    o = json_object();
    if (o == NULL || flags == NULL) {
        return o;
    }

    for (i = 0; i < flags->nelts; i++) {
        if (flags->items[i]->type != NGX_MAIL_PLUS_IMAP_ATOM) {
            continue;
        }

        s = flags->items[i]->str;

        if (s.len == 0 || s.len >= sizeof(buf)) {
            continue;
        }

        if (s.data[0] == '\\') {
            if (s.len == 5 && ngx_strncasecmp(s.data, (u_char *) "\\Seen", 5)
                              == 0)
            {
                json_object_set_new(o, "$seen", json_true());

            } else if (s.len == 8
                       && ngx_strncasecmp(s.data, (u_char *) "\\Flagged", 8)
                          == 0)
            {
                json_object_set_new(o, "$flagged", json_true());

            } else if (s.len == 9
                       && ngx_strncasecmp(s.data, (u_char *) "\\Answered", 9)
                          == 0)
            {
                json_object_set_new(o, "$answered", json_true());

            } else if (s.len == 6
                       && ngx_strncasecmp(s.data, (u_char *) "\\Draft", 6)
                          == 0)
            {
                json_object_set_new(o, "$draft", json_true());
            }

            continue;
        }

        ngx_strlow(buf, s.data, s.len);
        buf[s.len] = '\0';

        if (ngx_http_mail_plus_jmap_keyword((char *) buf) == NGX_OK) {
            json_object_set_new(o, (char *) buf, json_true());
        }
    }

    return o;
}


static json_t *
ngx_http_mail_plus_jmap_parts(ngx_http_mail_plus_jmap_get_t *g,
    ngx_array_t *parts, ngx_str_t *tail)
{
    json_t                           *list, *o;
    ngx_uint_t                        i;
    ngx_http_mail_plus_jmap_part_t  **p;

    list = json_array();
    if (list == NULL) {
        return NULL;
    }

    p = parts->elts;

    for (i = 0; i < parts->nelts; i++) {
        o = ngx_http_mail_plus_jmap_mime_part_json(g->pool, p[i],
                                                   g->body_props, tail);

        if (o == NULL || json_array_append_new(list, o) != 0) {
            json_decref(list);
            return NULL;
        }
    }

    return list;
}


static json_t *
ngx_http_mail_plus_jmap_values(ngx_http_mail_plus_jmap_get_t *g,
    ngx_http_mail_plus_jmap_msg_t *m)
{
    json_t                          *o, *v;
    ngx_str_t                        empty;
    ngx_uint_t                       i;
    ngx_http_mail_plus_jmap_want_t  *w;

    o = json_object();
    if (o == NULL || m->wants == NULL) {
        return o;
    }

    ngx_str_set(&empty, "");
    w = m->wants->elts;

    for (i = 0; i < m->wants->nelts; i++) {
        if (!w[i].got) {
            continue;                           /* for the preview only */
        }

        v = ngx_http_mail_plus_jmap_mime_body_value(
                                  w[i].utf8.data ? &w[i].utf8 : &empty,
                                  w[i].problem, g->max_bytes);

        if (v == NULL) {
            json_decref(o);
            return NULL;
        }

        if (w[i].truncated) {
            json_object_set_new(v, "isTruncated", json_true());
        }

        json_object_setn_new(o, (char *) w[i].part->part_id.data,
                             w[i].part->part_id.len, v);
    }

    return o;
}


/* the same written straight into the answer, the values escaped by
   nginx: "{"bodyValues":{"1":{"value":"...",...},...}" (the object's
   opening included) */

static ngx_int_t
ngx_http_mail_plus_jmap_values_text(ngx_http_mail_plus_jmap_get_t *g,
    ngx_http_mail_plus_jmap_msg_t *m)
{
    size_t                           n;
    ngx_str_t                        utf8;
    ngx_uint_t                       i, first, truncated;
    ngx_http_mail_plus_jmap_want_t  *w;
    ngx_http_mail_plus_jmap_text_t  *text;

    text = g->text;

#define ngx_jmap_raw(s)                                                       \
    if (ngx_http_mail_plus_jmap_text_raw(text, s, sizeof(s) - 1) != NGX_OK) { \
        return NGX_ERROR;                                                     \
    }

    ngx_jmap_raw("{\"bodyValues\":{")

    first = 1;
    w = (m->root && m->wants) ? m->wants->elts : NULL;

    for (i = 0; w && i < m->wants->nelts; i++) {
        if (!w[i].got) {
            continue;                           /* for the preview only */
        }

        if (w[i].utf8.data) {
            utf8 = w[i].utf8;

        } else {
            ngx_str_set(&utf8, "");
        }

        n = ngx_http_mail_plus_jmap_mime_body_text(&utf8, g->max_bytes,
                                                   &truncated);
        if (w[i].utf8.data) {
            w[i].utf8.len = utf8.len;           /* its CRLFs made LF */
        }

        if (!first) {
            ngx_jmap_raw(",")
        }

        first = 0;

        if (ngx_http_mail_plus_jmap_text_string(text, w[i].part->part_id.data,
                                                w[i].part->part_id.len)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_jmap_raw(":{\"value\":")

        if (ngx_http_mail_plus_jmap_text_string(text, utf8.data, n)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (w[i].problem) {
            ngx_jmap_raw(",\"isEncodingProblem\":true")

        } else {
            ngx_jmap_raw(",\"isEncodingProblem\":false")
        }

        if (truncated || w[i].truncated) {
            ngx_jmap_raw(",\"isTruncated\":true}")

        } else {
            ngx_jmap_raw(",\"isTruncated\":false}")
        }
    }

    ngx_jmap_raw("}")

#undef ngx_jmap_raw

    return NGX_OK;
}


/* an attachment that is not an inline part referred to by its cid */

static ngx_uint_t
ngx_http_mail_plus_jmap_has_attachment(ngx_http_mail_plus_jmap_msg_t *m)
{
    ngx_uint_t                        i;
    ngx_http_mail_plus_jmap_part_t  **p;

    p = m->att->elts;

    for (i = 0; i < m->att->nelts; i++) {
        if (p[i]->cid.len == 0
            || (p[i]->disposition.len == 10
                && ngx_strncmp(p[i]->disposition.data, "attachment", 10)
                   == 0))
        {
            return 1;
        }
    }

    return 0;
}


static void
ngx_http_mail_plus_jmap_get_cancel(ngx_http_mail_plus_jmap_call_t *call)
{
    ngx_http_mail_plus_jmap_get_t  *g;

    g = call->data;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, call->request->connection->log, 0,
                   "http jmap email: get cancelled");

    if (g && g->early_ev.posted) {
        ngx_delete_posted_event(&g->early_ev);
    }

    if (g && g->not_found) {
        json_decref(g->not_found);
        g->not_found = NULL;
    }
}
