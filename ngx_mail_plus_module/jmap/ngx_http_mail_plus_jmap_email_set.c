
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_http_mail_plus_jmap.h"


/*
 * Email/set (RFC 8620, section 5.3; RFC 8621, section 4.6): "create" by
 * the compose part (ngx_http_mail_plus_jmap_email_create()), then the
 * updates, then the destroys, mailbox by mailbox: SELECT, UID FETCH of the
 * UIDs named (those not there are "notFound"), then one UID STORE for all
 * the messages of a mailbox that get the same change of keywords, one UID
 * MOVE (or UID COPY, STORE \Deleted and UID EXPUNGE) for all those that go
 * to the same mailbox, and STORE \Deleted and UID EXPUNGE for the destroys.
 *
 * A message is in exactly one mailbox: "mailboxIds" must leave it in one.
 * A moved message gets a new UID, so a new id: it is answered in
 * "updated" as {"id", "blobId", "threadId"} of its new place (from the
 * backend's COPYUID; without UIDPLUS, null).
 */


#define NGX_HTTP_MAIL_PLUS_JMAP_KEYWORD_MAX  255


typedef enum {
    ngx_eset_store = 0,
    ngx_eset_move,
    ngx_eset_copy,
    ngx_eset_deleted,
    ngx_eset_expunge
} ngx_http_mail_plus_jmap_eset_op_e;


typedef enum {
    ngx_eset_select = 0,
    ngx_eset_fetch,
    ngx_eset_op
} ngx_http_mail_plus_jmap_eset_phase_e;


/* a message named by "update" or "destroy" */

typedef struct {
    const char                         *key;       /* as the client sent */
    ngx_http_mail_plus_jmap_ref_t       ref;
    ngx_uint_t                          mailbox;   /* index in the list */
    ngx_int_t                           target;    /* a move, or -1 */
    ngx_str_t                           store[2];  /* "+FLAGS.SILENT (...)" */
    ngx_str_t                           new_id;
    unsigned                            destroy:1;
    unsigned                            found:1;
    unsigned                            failed:1;
    unsigned                            moved:1;
} ngx_http_mail_plus_jmap_emsg_t;


/* one command over some of a mailbox's messages */

typedef struct {
    ngx_http_mail_plus_jmap_eset_op_e   kind;
    ngx_str_t                           text;      /* STORE's */
    ngx_int_t                           target;    /* MOVE, COPY */
    ngx_array_t                         msgs;      /* of ngx_uint_t */
} ngx_http_mail_plus_jmap_eop_t;


typedef struct {
    ngx_http_mail_plus_jmap_set_t         set;     /* first: the frame's */
    ngx_http_mail_plus_jmap_call_t     *call;
    ngx_array_t                        *mailboxes;  /* the list before */
    ngx_str_t                           old_state;


    ngx_array_t                         msgs;      /* of emsg */
    ngx_array_t                         boxes;     /* of ngx_uint_t */
    ngx_uint_t                          box;       /* the one at work */
    ngx_array_t                         ops;       /* its commands */
    ngx_uint_t                          op;        /* the one running */
    ngx_http_mail_plus_jmap_eset_phase_e  phase;
    ngx_uint_t                          changed;
} ngx_http_mail_plus_jmap_eset_t;


static ngx_int_t ngx_http_mail_plus_jmap_email_set_handler(
    ngx_http_mail_plus_jmap_call_t *call);
static ngx_int_t ngx_http_mail_plus_jmap_eset_start(
    ngx_http_mail_plus_jmap_set_t *set);
static void ngx_http_mail_plus_jmap_eset_created(
    ngx_http_mail_plus_jmap_call_t *call);
static ngx_int_t ngx_http_mail_plus_jmap_eset_prepare(
    ngx_http_mail_plus_jmap_eset_t *st);
static ngx_int_t ngx_http_mail_plus_jmap_eset_message(
    ngx_http_mail_plus_jmap_eset_t *st, const char *key, ngx_uint_t destroy,
    json_t *fail);
static ngx_int_t ngx_http_mail_plus_jmap_eset_patch(
    ngx_http_mail_plus_jmap_eset_t *st, ngx_http_mail_plus_jmap_emsg_t *m,
    json_t *patch, const char **bad, const char **description);
static ngx_int_t ngx_http_mail_plus_jmap_eset_keywords(
    ngx_http_mail_plus_jmap_eset_t *st, ngx_http_mail_plus_jmap_emsg_t *m,
    json_t *whole, ngx_array_t *add, ngx_array_t *remove);
static ngx_int_t ngx_http_mail_plus_jmap_eset_flag(ngx_pool_t *pool,
    const char *keyword, size_t len, ngx_str_t *flag);
static ngx_int_t ngx_http_mail_plus_jmap_eset_flags(ngx_pool_t *pool,
    const char *prefix, ngx_array_t *flags, ngx_str_t *text);
static ngx_int_t ngx_http_mail_plus_jmap_eset_target(
    ngx_http_mail_plus_jmap_eset_t *st, ngx_http_mail_plus_jmap_emsg_t *m,
    json_t *whole, json_t *patches, const char **description);
static ngx_int_t ngx_http_mail_plus_jmap_eset_next_box(
    ngx_http_mail_plus_jmap_eset_t *st);
static ngx_int_t ngx_http_mail_plus_jmap_eset_send(
    ngx_http_mail_plus_jmap_eset_t *st, ngx_str_t *uids, ngx_str_t *mailbox);
static void ngx_http_mail_plus_jmap_eset_handler(
    ngx_mail_plus_imap_cmd_t *cmd);
static ngx_int_t ngx_http_mail_plus_jmap_eset_reply(
    ngx_http_mail_plus_jmap_eset_t *st, ngx_mail_plus_imap_cmd_t *cmd);
static void ngx_http_mail_plus_jmap_eset_found(
    ngx_http_mail_plus_jmap_eset_t *st, ngx_mail_plus_imap_cmd_t *cmd);
static ngx_int_t ngx_http_mail_plus_jmap_eset_plan(
    ngx_http_mail_plus_jmap_eset_t *st);
static ngx_http_mail_plus_jmap_eop_t *ngx_http_mail_plus_jmap_eset_op(
    ngx_http_mail_plus_jmap_eset_t *st, ngx_http_mail_plus_jmap_eset_op_e kind,
    ngx_str_t *text, ngx_int_t target);
static ngx_int_t ngx_http_mail_plus_jmap_eset_next_op(
    ngx_http_mail_plus_jmap_eset_t *st);
static void ngx_http_mail_plus_jmap_eset_moved(
    ngx_http_mail_plus_jmap_eset_t *st, ngx_http_mail_plus_jmap_eop_t *op,
    ngx_mail_plus_imap_cmd_t *cmd);
static ngx_int_t ngx_http_mail_plus_jmap_eset_copyuid(
    ngx_http_mail_plus_jmap_eset_t *st, ngx_http_mail_plus_jmap_eop_t *op,
    ngx_mail_plus_imap_value_t *code);
static ngx_int_t ngx_http_mail_plus_jmap_eset_expand(
    ngx_http_mail_plus_jmap_eset_t *st, ngx_str_t *set, uint64_t *uids,
    ngx_uint_t n);
static ngx_int_t ngx_http_mail_plus_jmap_eset_answer(
    ngx_http_mail_plus_jmap_call_t *call);


ngx_http_mail_plus_jmap_method_t  ngx_http_mail_plus_jmap_email_set[] = {
    { "Email/set", NGX_HTTP_MAIL_PLUS_JMAP_MAIL,
      ngx_http_mail_plus_jmap_email_set_handler },
    { NULL, 0, NULL }
};


static ngx_int_t
ngx_http_mail_plus_jmap_email_set_handler(ngx_http_mail_plus_jmap_call_t *call)
{
    ngx_int_t                        rc;
    ngx_http_mail_plus_jmap_eset_t  *st;

    st = ngx_pcalloc(call->request->pool,
                     sizeof(ngx_http_mail_plus_jmap_eset_t));
    if (st == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_mail_plus_jmap_set_start(call, &st->set);
    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : NGX_ERROR;
    }

    st->set.answer = ngx_http_mail_plus_jmap_eset_answer;
    st->set.begin = ngx_http_mail_plus_jmap_eset_start;

    st->call = call;
    call->data = st;

    return ngx_http_mail_plus_jmap_set_run(&st->set);
}


/* the list is known: the state, ifInState, then "create" */

static ngx_int_t
ngx_http_mail_plus_jmap_eset_start(ngx_http_mail_plus_jmap_set_t *set)
{
    json_t                          *create;
    ngx_int_t                        rc;
    ngx_http_mail_plus_jmap_call_t  *call;
    ngx_http_mail_plus_jmap_eset_t  *st;

    st = (ngx_http_mail_plus_jmap_eset_t *) set;
    call = st->call;
    st->mailboxes = call->ctx->mailboxes;

    if (ngx_http_mail_plus_jmap_email_state(call->request->pool,
                                            st->mailboxes, &st->old_state)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_mail_plus_jmap_set_in_state(&st->set, st->old_state.data,
                                             st->old_state.len)
        != NGX_OK)
    {
        return NGX_OK;
    }

    create = json_object_get(call->args, "create");

    if (create == NULL || json_object_size(create) == 0) {
        return ngx_http_mail_plus_jmap_eset_prepare(st);
    }

    st->changed = 1;

    rc = ngx_http_mail_plus_jmap_email_create(call, create, st->set.created,
                              st->set.not_created,
                              ngx_http_mail_plus_jmap_eset_created);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_mail_plus_jmap_eset_prepare(st);
}


static void
ngx_http_mail_plus_jmap_eset_created(ngx_http_mail_plus_jmap_call_t *call)
{
    ngx_int_t                        rc;
    ngx_http_mail_plus_jmap_eset_t  *st;

    st = call->data;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, call->request->connection->log, 0,
                   "jmap email set: create done");

    rc = ngx_http_mail_plus_jmap_eset_prepare(st);

    if (rc != NGX_AGAIN) {
        ngx_http_mail_plus_jmap_set_finish(&st->set, rc);
    }
}


/* "update" and "destroy" read: the messages, the mailboxes to visit */

static ngx_int_t
ngx_http_mail_plus_jmap_eset_prepare(ngx_http_mail_plus_jmap_eset_t *st)
{
    json_t                          *update, *destroy, *patch;
    size_t                           i;
    ngx_int_t                        rc;
    ngx_uint_t                       j, n, *box;
    const char                      *key, *bad, *description, *s;
    ngx_pool_t                      *pool;
    ngx_http_mail_plus_jmap_emsg_t  *m, *msgs;

    pool = st->call->request->pool;
    update = json_object_get(st->call->args, "update");
    destroy = json_object_get(st->call->args, "destroy");

    n = json_object_size(update) + json_array_size(destroy);

    if (ngx_array_init(&st->msgs, pool, n ? n : 1,
                       sizeof(ngx_http_mail_plus_jmap_emsg_t))
        != NGX_OK
        || ngx_array_init(&st->boxes, pool, 4, sizeof(ngx_uint_t)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    json_object_foreach(update, key, patch) {

        /* an update of a message also destroyed: "willDestroy" */

        for (i = 0; i < json_array_size(destroy); i++) {
            s = json_string_value(json_array_get(destroy, i));

            if (s && ngx_strcmp(s, key) == 0) {
                break;
            }
        }

        if (i < json_array_size(destroy)) {
            if (ngx_http_mail_plus_jmap_set_error(st->set.not_updated, key,
                                                  "willDestroy", NULL, NULL)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        rc = ngx_http_mail_plus_jmap_eset_message(st, key, 0,
                                                  st->set.not_updated);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            continue;
        }

        m = (ngx_http_mail_plus_jmap_emsg_t *) st->msgs.elts
            + st->msgs.nelts - 1;

        bad = NULL;
        description = NULL;

        rc = ngx_http_mail_plus_jmap_eset_patch(st, m, patch, &bad,
                                                &description);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            st->msgs.nelts--;

            if (ngx_http_mail_plus_jmap_set_error(st->set.not_updated, key,
                                                  "invalidProperties", bad,
                                                  description)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    for (i = 0; i < json_array_size(destroy); i++) {
        key = json_string_value(json_array_get(destroy, i));

        if (key == NULL) {
            continue;
        }

        if (ngx_http_mail_plus_jmap_eset_message(st, key, 1,
                                                 st->set.not_destroyed)
            == NGX_ERROR)
        {
            return NGX_ERROR;
        }
    }

    /* the mailboxes, each once, in the order met */

    msgs = st->msgs.elts;

    for (i = 0; i < st->msgs.nelts; i++) {
        box = st->boxes.elts;

        for (j = 0; j < st->boxes.nelts; j++) {
            if (box[j] == msgs[i].mailbox) {
                break;
            }
        }

        if (j == st->boxes.nelts) {
            box = ngx_array_push(&st->boxes);
            if (box == NULL) {
                return NGX_ERROR;
            }

            *box = msgs[i].mailbox;
        }
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, st->call->request->connection->log, 0,
                   "jmap email set: %ui messages in %ui mailboxes",
                   st->msgs.nelts, st->boxes.nelts);

    st->box = 0;

    return ngx_http_mail_plus_jmap_eset_next_box(st);
}


/*
 * a message of "update" or "destroy" by its id: NGX_OK (added), or
 * NGX_DECLINED ("notFound" answered in fail)
 */

static ngx_int_t
ngx_http_mail_plus_jmap_eset_message(ngx_http_mail_plus_jmap_eset_t *st,
    const char *key, ngx_uint_t destroy, json_t *fail)
{
    u_char                              mid[17];
    ngx_str_t                           id;
    ngx_uint_t                          i;
    const char                         *resolved;
    ngx_http_mail_plus_jmap_ref_t       ref;
    ngx_http_mail_plus_jmap_emsg_t     *m, *msgs;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    resolved = ngx_http_mail_plus_jmap_id(st->call->ctx, key);

    mb = NULL;
    ngx_memzero(&ref, sizeof(ngx_http_mail_plus_jmap_ref_t));

    if (resolved) {
        id.data = (u_char *) resolved;
        id.len = ngx_strlen(resolved);

        if (ngx_http_mail_plus_jmap_ref(st->call->request->pool, &id, &ref)
            == 'E')
        {
            mid[0] = 'M';
            ngx_memcpy(mid + 1, ref.mailbox, 16);

            mb = ngx_http_mail_plus_jmap_mailbox_find(st->mailboxes, mid);

            if (mb && (mb->noselect || mb->uidvalidity != ref.uidvalidity)) {
                mb = NULL;
            }
        }
    }

    /* an id named twice in "destroy" counts once */

    msgs = st->msgs.elts;

    for (i = 0; mb && i < st->msgs.nelts; i++) {
        if (msgs[i].destroy == destroy
            && ngx_strcmp(msgs[i].key, resolved) == 0)
        {
            return NGX_DECLINED;
        }
    }

    if (mb == NULL) {
        return ngx_http_mail_plus_jmap_set_error(fail, key, "notFound", NULL,
                                                 NULL)
               == NGX_OK ? NGX_DECLINED : NGX_ERROR;
    }

    m = ngx_array_push(&st->msgs);
    if (m == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(m, sizeof(ngx_http_mail_plus_jmap_emsg_t));

    m->key = resolved;   /* a creation id answered as what it made */
    m->ref = ref;
    m->mailbox = mb - (ngx_http_mail_plus_jmap_mailbox_t *)
                      st->mailboxes->elts;
    m->target = -1;
    m->destroy = destroy;

    return NGX_OK;
}


/*
 * an update's patch: "keywords" or "keywords/<k>", "mailboxIds" or
 * "mailboxIds/<id>"; NGX_DECLINED with the property refused
 */

static ngx_int_t
ngx_http_mail_plus_jmap_eset_patch(ngx_http_mail_plus_jmap_eset_t *st,
    ngx_http_mail_plus_jmap_emsg_t *m, json_t *patch, const char **bad,
    const char **description)
{
    json_t       *v, *kw_whole, *mb_whole, *mb_patches;
    ngx_int_t     rc;
    ngx_str_t    *flag;
    ngx_pool_t   *pool;
    const char   *key;
    ngx_array_t   add, remove;

    pool = st->call->request->pool;

    if (!json_is_object(patch)) {
        *description = "an update must be an object";
        return NGX_DECLINED;
    }

    if (ngx_array_init(&add, pool, 4, sizeof(ngx_str_t)) != NGX_OK
        || ngx_array_init(&remove, pool, 4, sizeof(ngx_str_t)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    kw_whole = NULL;
    mb_whole = NULL;

    mb_patches = json_object();
    if (mb_patches == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_OK;

    json_object_foreach(patch, key, v) {

        *bad = key;

        if (ngx_strcmp(key, "keywords") == 0) {
            if (!json_is_object(v)) {
                rc = NGX_DECLINED;
                break;
            }

            kw_whole = v;
            continue;
        }

        if (ngx_strcmp(key, "mailboxIds") == 0) {
            if (!json_is_object(v)) {
                rc = NGX_DECLINED;
                break;
            }

            mb_whole = v;
            continue;
        }

        if (ngx_strncmp(key, "keywords/", 9) == 0) {
            if (!json_is_true(v) && !json_is_null(v)) {
                rc = NGX_DECLINED;
                break;
            }

            flag = ngx_array_push(json_is_true(v) ? &add : &remove);
            if (flag == NULL) {
                rc = NGX_ERROR;
                break;
            }

            rc = ngx_http_mail_plus_jmap_eset_flag(pool, key + 9,
                                                   ngx_strlen(key + 9), flag);
            if (rc != NGX_OK) {
                break;
            }

            continue;
        }

        if (ngx_strncmp(key, "mailboxIds/", 11) == 0) {
            if ((!json_is_true(v) && !json_is_null(v))
                || json_object_set(mb_patches, key + 11, v) != 0)
            {
                rc = NGX_DECLINED;
                break;
            }

            continue;
        }

        rc = NGX_DECLINED;
        break;
    }

    if (rc == NGX_OK
        && ((kw_whole && (add.nelts || remove.nelts))
            || (mb_whole && json_object_size(mb_patches))))
    {
        *bad = NULL;
        *description = "a property and patches of it in the same update";
        rc = NGX_DECLINED;
    }

    if (rc == NGX_OK) {
        *bad = "keywords";
        rc = ngx_http_mail_plus_jmap_eset_keywords(st, m, kw_whole, &add,
                                                   &remove);
    }

    if (rc == NGX_OK && (mb_whole || json_object_size(mb_patches))) {
        *bad = "mailboxIds";
        rc = ngx_http_mail_plus_jmap_eset_target(st, m, mb_whole, mb_patches,
                                                 description);
    }

    json_decref(mb_patches);

    return rc;
}


/* the STORE texts of an update's keywords */

static ngx_int_t
ngx_http_mail_plus_jmap_eset_keywords(ngx_http_mail_plus_jmap_eset_t *st,
    ngx_http_mail_plus_jmap_emsg_t *m, json_t *whole, ngx_array_t *add,
    ngx_array_t *remove)
{
    json_t      *v;
    ngx_int_t    rc;
    ngx_str_t   *flag;
    ngx_pool_t  *pool;
    const char  *key;
    ngx_array_t  flags;

    pool = st->call->request->pool;

    if (whole) {
        if (ngx_array_init(&flags, pool, 4, sizeof(ngx_str_t)) != NGX_OK) {
            return NGX_ERROR;
        }

        json_object_foreach(whole, key, v) {
            if (!json_is_true(v)) {
                return NGX_DECLINED;
            }

            flag = ngx_array_push(&flags);
            if (flag == NULL) {
                return NGX_ERROR;
            }

            rc = ngx_http_mail_plus_jmap_eset_flag(pool, key,
                                                   ngx_strlen(key), flag);
            if (rc != NGX_OK) {
                return rc;
            }
        }

        return ngx_http_mail_plus_jmap_eset_flags(pool, "FLAGS.SILENT",
                                                  &flags, &m->store[0]);
    }

    if (add->nelts
        && ngx_http_mail_plus_jmap_eset_flags(pool, "+FLAGS.SILENT", add,
                                              &m->store[0])
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (remove->nelts
        && ngx_http_mail_plus_jmap_eset_flags(pool, "-FLAGS.SILENT", remove,
                                              &m->store[1])
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * a keyword (RFC 8621, section 4.1.1) as an IMAP flag: the four system
 * ones, else the keyword in lower case if it is an IMAP atom;
 * NGX_DECLINED for one that is not
 */

static ngx_int_t
ngx_http_mail_plus_jmap_eset_flag(ngx_pool_t *pool, const char *keyword,
    size_t len, ngx_str_t *flag)
{
    u_char      c, *p;
    size_t      i;
    ngx_uint_t  k;

    static struct {
        ngx_str_t  keyword;
        ngx_str_t  flag;
    } system[] = {
        { ngx_string("$seen"), ngx_string("\\Seen") },
        { ngx_string("$flagged"), ngx_string("\\Flagged") },
        { ngx_string("$answered"), ngx_string("\\Answered") },
        { ngx_string("$draft"), ngx_string("\\Draft") }
    };

    if (len == 0 || len > NGX_HTTP_MAIL_PLUS_JMAP_KEYWORD_MAX) {
        return NGX_DECLINED;
    }

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < len; i++) {
        c = (u_char) keyword[i];

        if (c <= 0x20 || c >= 0x7f || c == '(' || c == ')' || c == '{'
            || c == ']' || c == '%' || c == '*' || c == '"' || c == '\\')
        {
            return NGX_DECLINED;
        }

        p[i] = ngx_tolower(c);
    }

    for (k = 0; k < sizeof(system) / sizeof(system[0]); k++) {
        if (system[k].keyword.len == len
            && ngx_strncmp(system[k].keyword.data, p, len) == 0)
        {
            *flag = system[k].flag;
            return NGX_OK;
        }
    }

    flag->data = p;
    flag->len = len;

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_http_mail_plus_jmap_eset_cmp(const void *a, const void *b)
{
    ngx_str_t  *x = (ngx_str_t *) a;
    ngx_str_t  *y = (ngx_str_t *) b;

    ngx_int_t  rc;

    rc = ngx_memn2cmp(x->data, y->data, x->len, y->len);

    return rc < 0 ? -1 : (rc > 0 ? 1 : 0);
}


/* "+FLAGS.SILENT (\Seen $x)": the flags sorted, each once */

static ngx_int_t
ngx_http_mail_plus_jmap_eset_flags(ngx_pool_t *pool, const char *prefix,
    ngx_array_t *flags, ngx_str_t *text)
{
    u_char      *p;
    size_t       len;
    ngx_str_t   *f;
    ngx_uint_t   i;

    f = flags->elts;

    ngx_qsort(f, flags->nelts, sizeof(ngx_str_t),
              ngx_http_mail_plus_jmap_eset_cmp);

    len = ngx_strlen(prefix) + sizeof(" ()") - 1;

    for (i = 0; i < flags->nelts; i++) {
        len += f[i].len + 1;
    }

    text->data = ngx_pnalloc(pool, len);
    if (text->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(text->data, "%s (", prefix);

    for (i = 0; i < flags->nelts; i++) {
        if (i && f[i].len == f[i - 1].len
            && ngx_strncmp(f[i].data, f[i - 1].data, f[i].len) == 0)
        {
            continue;
        }

        if (p[-1] != '(') {
            *p++ = ' ';
        }

        p = ngx_cpymem(p, f[i].data, f[i].len);
    }

    *p++ = ')';

    text->len = p - text->data;

    return NGX_OK;
}


/*
 * the mailbox an update leaves the message in: exactly one; a move if it
 * is not the one it is in
 */

static ngx_int_t
ngx_http_mail_plus_jmap_eset_target(ngx_http_mail_plus_jmap_eset_t *st,
    ngx_http_mail_plus_jmap_emsg_t *m, json_t *whole, json_t *patches,
    const char **description)
{
    json_t                             *set, *v;
    ngx_int_t                           target;
    const char                         *key, *id;
    ngx_http_mail_plus_jmap_mailbox_t  *mb, *cur;

    cur = (ngx_http_mail_plus_jmap_mailbox_t *) st->mailboxes->elts
          + m->mailbox;

    if (whole) {
        set = json_deep_copy(whole);

    } else {
        set = json_pack("{sb}", (const char *) cur->id, 1);
    }

    if (set == NULL) {
        return NGX_ERROR;
    }

    json_object_foreach(patches, key, v) {
        if (json_is_true(v)) {
            json_object_set(set, key, v);

        } else {
            json_object_del(set, key);
        }
    }

    target = -1;

    if (json_object_size(set) != 1) {
        *description = json_object_size(set)
                       ? "a message is in exactly one mailbox here"
                       : "a message must be in a mailbox";
        json_decref(set);
        return NGX_DECLINED;
    }

    json_object_foreach(set, key, v) {
        id = ngx_http_mail_plus_jmap_id(st->call->ctx, key);

        mb = NULL;

        if (json_is_true(v) && id && ngx_strlen(id) == 17) {
            mb = ngx_http_mail_plus_jmap_mailbox_find(st->mailboxes,
                                                      (u_char *) id);
        }

        if (mb == NULL || mb->noselect) {
            *description = "no such mailbox";
            json_decref(set);
            return NGX_DECLINED;
        }

        target = mb - (ngx_http_mail_plus_jmap_mailbox_t *)
                      st->mailboxes->elts;
    }

    json_decref(set);

    if (target != (ngx_int_t) m->mailbox) {
        m->target = target;
    }

    return NGX_OK;
}


/* the next mailbox: SELECT it; or the end */

static ngx_int_t
ngx_http_mail_plus_jmap_eset_next_box(ngx_http_mail_plus_jmap_eset_t *st)
{
    ngx_uint_t                         *box;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    if (st->box == st->boxes.nelts) {
        return ngx_http_mail_plus_jmap_set_end(&st->set, st->changed);
    }

    box = st->boxes.elts;
    mb = (ngx_http_mail_plus_jmap_mailbox_t *) st->mailboxes->elts
         + box[st->box];

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, st->call->request->connection->log, 0,
                   "jmap email set: mailbox %s", mb->id);

    st->phase = ngx_eset_select;

    return ngx_http_mail_plus_jmap_eset_send(st, NULL, &mb->path);
}


/* a uid set of the messages given, sorted, as ranges */

static ngx_int_t
ngx_http_mail_plus_jmap_eset_uids(ngx_http_mail_plus_jmap_eset_t *st,
    ngx_array_t *list, ngx_uint_t all, ngx_str_t *uids)
{
    u_char                          *p;
    uint64_t                        *u, first;
    ngx_uint_t                       i, j, n, *index;
    ngx_http_mail_plus_jmap_emsg_t  *msgs;

    msgs = st->msgs.elts;
    index = list->elts;

    u = ngx_palloc(st->call->request->pool,
                   (list->nelts + 1) * sizeof(uint64_t));
    if (u == NULL) {
        return NGX_ERROR;
    }

    n = 0;

    for (i = 0; i < list->nelts; i++) {
        if (all || (msgs[index[i]].found && !msgs[index[i]].failed)) {
            u[n++] = msgs[index[i]].ref.uid;
        }
    }

    /* insertion sort: a few hundred at most */

    for (i = 1; i < n; i++) {
        first = u[i];

        for (j = i; j > 0 && u[j - 1] > first; j--) {
            u[j] = u[j - 1];
        }

        u[j] = first;
    }

    uids->len = 0;

    if (n == 0) {
        return NGX_OK;
    }

    uids->data = ngx_pnalloc(st->call->request->pool, n * (NGX_INT64_LEN + 1));
    if (uids->data == NULL) {
        return NGX_ERROR;
    }

    p = uids->data;

    for (i = 0; i < n; /* void */) {
        first = u[i];

        while (i + 1 < n && u[i + 1] <= u[i] + 1) {
            i++;
        }

        if (p != uids->data) {
            *p++ = ',';
        }

        p = (u[i] == first) ? ngx_sprintf(p, "%uL", first)
                            : ngx_sprintf(p, "%uL:%uL", first, u[i]);
        i++;
    }

    uids->len = p - uids->data;

    return NGX_OK;
}


/* a command of the phase: SELECT, the FETCH, or the op at hand */

static ngx_int_t
ngx_http_mail_plus_jmap_eset_send(ngx_http_mail_plus_jmap_eset_t *st,
    ngx_str_t *uids, ngx_str_t *mailbox)
{
    ngx_int_t                           rc;
    ngx_mail_plus_imap_t               *imap;
    ngx_mail_plus_imap_cmd_t           *cmd;
    ngx_http_mail_plus_jmap_eop_t      *op;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    imap = ngx_http_mail_plus_jmap_imap(st->call->ctx);
    if (imap == NULL) {
        return NGX_ERROR;
    }

    cmd = ngx_mail_plus_imap_cmd(imap, st->call->request->pool);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    cmd->handler = ngx_http_mail_plus_jmap_eset_handler;
    cmd->data = st;

    switch (st->phase) {

    case ngx_eset_select:
        rc = ngx_mail_plus_imap_cmd_text(cmd, "SELECT ");
        if (rc == NGX_OK) {
            rc = ngx_mail_plus_imap_cmd_mailbox(cmd, mailbox);
        }
        break;

    case ngx_eset_fetch:
        rc = ngx_mail_plus_imap_cmd_text(cmd, "UID FETCH %V (UID)", uids);
        break;

    default: /* ngx_eset_op */
        op = (ngx_http_mail_plus_jmap_eop_t *) st->ops.elts + st->op;

        switch (op->kind) {

        case ngx_eset_store:
            rc = ngx_mail_plus_imap_cmd_text(cmd, "UID STORE %V %V", uids,
                                             &op->text);
            break;

        case ngx_eset_deleted:
            rc = ngx_mail_plus_imap_cmd_text(cmd,
                                          "UID STORE %V +FLAGS.SILENT "
                                          "(\\Deleted)", uids);
            break;

        case ngx_eset_expunge:
            rc = ngx_mail_plus_imap_cmd_text(cmd, "UID EXPUNGE %V", uids);
            break;

        default: /* move, copy */
            mb = (ngx_http_mail_plus_jmap_mailbox_t *) st->mailboxes->elts
                 + op->target;

            rc = ngx_mail_plus_imap_cmd_text(cmd, "UID %s %V ",
                                             op->kind == ngx_eset_move
                                             ? "MOVE" : "COPY", uids);
            if (rc == NGX_OK) {
                rc = ngx_mail_plus_imap_cmd_mailbox(cmd, &mb->path);
            }
        }
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, st->call->request->connection->log, 0,
                   "jmap email set: command sent, phase %d, op %ui",
                   (int) st->phase, st->op);

    if (ngx_mail_plus_imap_send(cmd) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


static void
ngx_http_mail_plus_jmap_eset_handler(ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_int_t                        rc;
    ngx_http_mail_plus_jmap_eset_t  *st;

    st = cmd->data;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, st->call->request->connection->log, 0,
                   "jmap email set: reply %i %d in phase %d", cmd->rc,
                   (int) cmd->status, (int) st->phase);

    rc = ngx_http_mail_plus_jmap_eset_reply(st, cmd);

    if (rc != NGX_AGAIN) {
        ngx_http_mail_plus_jmap_set_finish(&st->set, rc);
    }
}


static ngx_int_t
ngx_http_mail_plus_jmap_eset_reply(ngx_http_mail_plus_jmap_eset_t *st,
    ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_str_t                        uids;
    ngx_uint_t                       i, ok, *box, *index;
    ngx_array_t                      list;
    ngx_http_mail_plus_jmap_eop_t   *op;
    ngx_http_mail_plus_jmap_emsg_t  *msgs;

    ok = (cmd->rc == NGX_OK && cmd->status == NGX_MAIL_PLUS_IMAP_OK);

    if (cmd->rc != NGX_OK) {
        st->call->error = "serverFail";
        st->call->description = cmd->imap->error;
        return NGX_OK;
    }

    msgs = st->msgs.elts;
    box = st->boxes.elts;

    switch (st->phase) {

    case ngx_eset_select:

        if (!ok) {
            /* the mailbox is gone: its messages too */
            st->box++;
            return ngx_http_mail_plus_jmap_eset_next_box(st);
        }

        if (ngx_array_init(&list, st->call->request->pool, 8,
                           sizeof(ngx_uint_t))
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        for (i = 0; i < st->msgs.nelts; i++) {
            if (msgs[i].mailbox == box[st->box]) {
                index = ngx_array_push(&list);
                if (index == NULL) {
                    return NGX_ERROR;
                }

                *index = i;
            }
        }

        if (ngx_http_mail_plus_jmap_eset_uids(st, &list, 1, &uids)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        st->phase = ngx_eset_fetch;

        return ngx_http_mail_plus_jmap_eset_send(st, &uids, NULL);

    case ngx_eset_fetch:

        if (ok) {
            ngx_http_mail_plus_jmap_eset_found(st, cmd);
        }

        if (ngx_http_mail_plus_jmap_eset_plan(st) != NGX_OK) {
            return NGX_ERROR;
        }

        st->phase = ngx_eset_op;
        st->op = 0;

        return ngx_http_mail_plus_jmap_eset_next_op(st);

    default: /* ngx_eset_op */

        op = (ngx_http_mail_plus_jmap_eop_t *) st->ops.elts + st->op;
        index = op->msgs.elts;

        if (op->kind == ngx_eset_move || op->kind == ngx_eset_copy) {
            ngx_http_mail_plus_jmap_eset_moved(st, op, cmd);
        }

        for (i = 0; i < op->msgs.nelts; i++) {
            if (!ok) {
                msgs[index[i]].failed = 1;
            }
        }

        if (ok) {
            st->changed = 1;
        }

        st->op++;

        return ngx_http_mail_plus_jmap_eset_next_op(st);
    }
}


/* the UIDs the FETCH answered: the messages found */

static void
ngx_http_mail_plus_jmap_eset_found(ngx_http_mail_plus_jmap_eset_t *st,
    ngx_mail_plus_imap_cmd_t *cmd)
{
    uint64_t                          uid;
    ngx_uint_t                        i, j, *box;
    ngx_mail_plus_imap_value_t       *list, *name;
    ngx_mail_plus_imap_response_t   **resp;
    ngx_http_mail_plus_jmap_emsg_t   *msgs;

    resp = cmd->untagged.elts;
    msgs = st->msgs.elts;
    box = st->boxes.elts;

    for (i = 0; i < cmd->untagged.nelts; i++) {

        if (resp[i]->status != NGX_MAIL_PLUS_IMAP_DATA
            || resp[i]->name.len != 5
            || ngx_strncasecmp(resp[i]->name.data, (u_char *) "FETCH", 5)
               != 0)
        {
            continue;
        }

        list = ngx_mail_plus_imap_item(resp[i]->data, 0);

        for (j = 0; j + 1 < (list ? list->nelts : 0); j += 2) {
            name = ngx_mail_plus_imap_item(list, j);

            if (ngx_mail_plus_imap_atom_is(name, "UID", 3)
                && ngx_mail_plus_imap_number(
                       ngx_mail_plus_imap_item(list, j + 1), &uid)
                   == NGX_OK)
            {
                break;
            }
        }

        if (list == NULL || j + 1 >= list->nelts) {
            continue;
        }

        for (j = 0; j < st->msgs.nelts; j++) {
            if (msgs[j].mailbox == box[st->box] && msgs[j].ref.uid == uid) {
                msgs[j].found = 1;
            }
        }
    }
}


/*
 * the commands for the mailbox's messages found: a STORE for each text,
 * a MOVE (or COPY, STORE, EXPUNGE) for each target, then the destroys
 */

static ngx_int_t
ngx_http_mail_plus_jmap_eset_plan(ngx_http_mail_plus_jmap_eset_t *st)
{
    ngx_uint_t                       i, k, *index, *box;
    ngx_mail_plus_imap_t            *imap;
    ngx_http_mail_plus_jmap_eop_t   *op;
    ngx_http_mail_plus_jmap_emsg_t  *m, *msgs;

    if (ngx_array_init(&st->ops, st->call->request->pool, 4,
                       sizeof(ngx_http_mail_plus_jmap_eop_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    imap = st->call->ctx->imap;
    msgs = st->msgs.elts;
    box = st->boxes.elts;

    for (i = 0; i < st->msgs.nelts; i++) {
        m = &msgs[i];

        if (m->mailbox != box[st->box] || !m->found) {
            continue;
        }

        for (k = 0; k < 2 && !m->destroy; k++) {
            if (m->store[k].len == 0) {
                continue;
            }

            op = ngx_http_mail_plus_jmap_eset_op(st, ngx_eset_store,
                                                 &m->store[k], -1);
            if (op == NULL || (index = ngx_array_push(&op->msgs)) == NULL) {
                return NGX_ERROR;
            }

            *index = i;
        }
    }

    for (k = 0; k < 3; k++) {
        for (i = 0; i < st->msgs.nelts; i++) {
            m = &msgs[i];

            if (m->mailbox != box[st->box] || !m->found
                || (m->destroy ? k == 0 : m->target == -1))
            {
                continue;
            }

            if (k == 0) {
                op = ngx_http_mail_plus_jmap_eset_op(st,
                         imap->move ? ngx_eset_move : ngx_eset_copy, NULL,
                         m->target);

            } else if (!m->destroy && imap->move) {
                continue;

            } else {
                op = ngx_http_mail_plus_jmap_eset_op(st,
                         k == 1 ? ngx_eset_deleted : ngx_eset_expunge, NULL,
                         -1);
            }

            if (op == NULL || (index = ngx_array_push(&op->msgs)) == NULL) {
                return NGX_ERROR;
            }

            *index = i;
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, st->call->request->connection->log, 0,
                   "jmap email set: %ui commands", st->ops.nelts);

    return NGX_OK;
}


/* the op of that kind, text and target, or a new one */

static ngx_http_mail_plus_jmap_eop_t *
ngx_http_mail_plus_jmap_eset_op(ngx_http_mail_plus_jmap_eset_t *st,
    ngx_http_mail_plus_jmap_eset_op_e kind, ngx_str_t *text,
    ngx_int_t target)
{
    ngx_uint_t                      i;
    ngx_http_mail_plus_jmap_eop_t  *op;

    op = st->ops.elts;

    for (i = 0; i < st->ops.nelts; i++) {
        if (op[i].kind == kind && op[i].target == target
            && (text == NULL
                || (op[i].text.len == text->len
                    && ngx_strncmp(op[i].text.data, text->data, text->len)
                       == 0)))
        {
            return &op[i];
        }
    }

    op = ngx_array_push(&st->ops);
    if (op == NULL) {
        return NULL;
    }

    op->kind = kind;
    op->target = target;

    if (text) {
        op->text = *text;

    } else {
        ngx_str_null(&op->text);
    }

    if (ngx_array_init(&op->msgs, st->call->request->pool, 4,
                       sizeof(ngx_uint_t))
        != NGX_OK)
    {
        return NULL;
    }

    return op;
}


/* the next op over the messages not failed; the next mailbox after them */

static ngx_int_t
ngx_http_mail_plus_jmap_eset_next_op(ngx_http_mail_plus_jmap_eset_t *st)
{
    ngx_str_t                       uids;
    ngx_http_mail_plus_jmap_eop_t  *op;

    for ( ;; ) {

        if (st->op == st->ops.nelts) {
            st->box++;
            return ngx_http_mail_plus_jmap_eset_next_box(st);
        }

        op = (ngx_http_mail_plus_jmap_eop_t *) st->ops.elts + st->op;

        if (ngx_http_mail_plus_jmap_eset_uids(st, &op->msgs, 0, &uids)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (uids.len) {
            if (op->kind == ngx_eset_expunge && !st->call->ctx->imap->uidplus)
            {
                /* a plain EXPUNGE would take others' \Deleted messages */
                st->op++;
                continue;
            }

            return ngx_http_mail_plus_jmap_eset_send(st, &uids, NULL);
        }

        st->op++;
    }
}


/* a MOVE's or COPY's answer: COPYUID in the tagged or an untagged OK */

static void
ngx_http_mail_plus_jmap_eset_moved(ngx_http_mail_plus_jmap_eset_t *st,
    ngx_http_mail_plus_jmap_eop_t *op, ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_uint_t                       i, *index;
    ngx_mail_plus_imap_response_t  **resp;
    ngx_http_mail_plus_jmap_emsg_t  *msgs;

    if (cmd->status != NGX_MAIL_PLUS_IMAP_OK) {
        return;
    }

    msgs = st->msgs.elts;
    index = op->msgs.elts;

    for (i = 0; i < op->msgs.nelts; i++) {
        if (!msgs[index[i]].failed) {
            msgs[index[i]].moved = 1;
        }
    }

    if (ngx_http_mail_plus_jmap_eset_copyuid(st, op, cmd->code) == NGX_OK) {
        return;
    }

    resp = cmd->untagged.elts;

    for (i = 0; i < cmd->untagged.nelts; i++) {
        if (resp[i]->status == NGX_MAIL_PLUS_IMAP_OK
            && ngx_http_mail_plus_jmap_eset_copyuid(st, op, resp[i]->code)
               == NGX_OK)
        {
            return;
        }
    }
}


/*
 * "[COPYUID uidvalidity source-set dest-set]" (RFC 4315): the new ids of
 * the messages moved, in the order of the sets; NGX_DECLINED if it is not
 * one
 */

static ngx_int_t
ngx_http_mail_plus_jmap_eset_copyuid(ngx_http_mail_plus_jmap_eset_t *st,
    ngx_http_mail_plus_jmap_eop_t *op, ngx_mail_plus_imap_value_t *code)
{
    uint64_t                            uidvalidity, *src, *dst;
    ngx_str_t                           s, d;
    ngx_uint_t                          i, j, n, *index;
    ngx_http_mail_plus_jmap_ref_t       ref;
    ngx_http_mail_plus_jmap_emsg_t     *msgs;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    if (!ngx_mail_plus_imap_atom_is(ngx_mail_plus_imap_item(code, 0),
                                    "COPYUID", 7)
        || ngx_mail_plus_imap_number(ngx_mail_plus_imap_item(code, 1),
                                     &uidvalidity)
           != NGX_OK
        || uidvalidity == 0 || uidvalidity > 0xffffffff
        || ngx_mail_plus_imap_string(ngx_mail_plus_imap_item(code, 2), &s)
           != NGX_OK
        || ngx_mail_plus_imap_string(ngx_mail_plus_imap_item(code, 3), &d)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    n = op->msgs.nelts;

    src = ngx_palloc(st->call->request->pool, 2 * n * sizeof(uint64_t));
    if (src == NULL) {
        return NGX_DECLINED;
    }

    dst = src + n;

    if (ngx_http_mail_plus_jmap_eset_expand(st, &s, src, n) != NGX_OK
        || ngx_http_mail_plus_jmap_eset_expand(st, &d, dst, n) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    msgs = st->msgs.elts;
    index = op->msgs.elts;
    mb = (ngx_http_mail_plus_jmap_mailbox_t *) st->mailboxes->elts
         + op->target;

    for (i = 0; i < n; i++) {
        for (j = 0; j < n; j++) {
            if (msgs[index[j]].ref.uid == src[i]) {
                break;
            }
        }

        if (j == n) {
            continue;
        }

        ref = msgs[index[j]].ref;
        ngx_memcpy(ref.mailbox, mb->id + 1, 16);
        ref.uidvalidity = uidvalidity;
        ref.uid = dst[i];

        if (ngx_http_mail_plus_jmap_ref_id(st->call->request->pool, 'E', &ref,
                                           &msgs[index[j]].new_id)
            != NGX_OK)
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* a set of exactly n UIDs, in its order */

static ngx_int_t
ngx_http_mail_plus_jmap_eset_expand(ngx_http_mail_plus_jmap_eset_t *st,
    ngx_str_t *set, uint64_t *uids, ngx_uint_t n)
{
    u_char                      *p, *last;
    uint64_t                     u;
    ngx_uint_t                   k;
    ngx_mail_plus_imap_range_t   r;

    p = set->data;
    last = p + set->len;
    k = 0;

    if (p == last) {
        return NGX_DECLINED;
    }

    while (p < last) {
        p = ngx_mail_plus_imap_uid_range(p, last, &r);

        if (p == NULL || r.last - r.first >= n - k) {
            return NGX_DECLINED;
        }

        for (u = r.first; u <= r.last; u++) {
            uids[k++] = u;
        }
    }

    return k == n ? NGX_OK : NGX_DECLINED;
}


static ngx_int_t
ngx_http_mail_plus_jmap_eset_answer(ngx_http_mail_plus_jmap_call_t *call)
{
    json_t                          *v;
    ngx_str_t                        new_state;
    ngx_uint_t                       i;
    ngx_http_mail_plus_jmap_ctx_t   *ctx;
    ngx_http_mail_plus_jmap_eset_t  *st;
    ngx_http_mail_plus_jmap_emsg_t  *m;

    st = call->data;
    ctx = call->ctx;
    new_state = st->old_state;

    if (st->changed && ctx->mailboxes
        && ngx_http_mail_plus_jmap_email_state(st->call->request->pool,
                                               ctx->mailboxes, &new_state)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    m = st->msgs.elts;

    for (i = 0; i < st->msgs.nelts; i++) {

        if (!m[i].found || m[i].failed) {
            if (ngx_http_mail_plus_jmap_set_error(
                    m[i].destroy ? st->set.not_destroyed
                                 : st->set.not_updated,
                    m[i].key, m[i].found ? "serverFail" : "notFound", NULL,
                    NULL)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if (m[i].destroy) {
            if (json_array_append_new(st->set.destroyed, json_string(m[i].key))
                != 0)
            {
                return NGX_ERROR;
            }

            continue;
        }

        v = json_null();

        if (m[i].moved && m[i].new_id.len) {
            /* the blob and the thread: "B" and "T" with the id's tail */

            v = json_pack("{ss#soso}",
                          "id", (const char *) m[i].new_id.data,
                          (int) m[i].new_id.len,
                          "blobId",
                          json_sprintf("B%.*s", (int) m[i].new_id.len - 1,
                                       m[i].new_id.data + 1),
                          "threadId",
                          json_sprintf("T%.*s", (int) m[i].new_id.len - 1,
                                       m[i].new_id.data + 1));
            if (v == NULL) {
                return NGX_ERROR;
            }
        }

        if (json_object_set_new(st->set.updated, m[i].key, v) != 0) {
            return NGX_ERROR;
        }
    }

    return ngx_http_mail_plus_jmap_set_answer(&st->set, st->old_state.data,
                                              st->old_state.len,
                                              new_state.data, new_state.len);
}
