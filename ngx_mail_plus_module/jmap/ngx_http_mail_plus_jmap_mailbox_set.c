
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_http_mail_plus_jmap.h"


/*
 * Mailbox/set (RFC 8621, section 2.5): each object in turn, "create",
 * then "update", then "destroy" (deepest first):
 *
 *   create   CREATE <parent's name><delimiter><name>, SUBSCRIBE if
 *            isSubscribed;
 *   update   RENAME for a new name or parentId (the id, made from the
 *            name, changes: answered as {"id": new}; the children's ids
 *            change with it), SUBSCRIBE or UNSUBSCRIBE for isSubscribed;
 *   destroy  DELETE (and UNSUBSCRIBE); "mailboxHasChild" while it has
 *            children, "mailboxHasEmail" while it has messages unless
 *            onDestroyRemoveEmails; the Inbox is not destroyed.
 *
 * A name is UTF-8 of 1 to 490 bytes, without control characters, the
 * hierarchy delimiter or the LIST wildcards "*" and "%".  Roles and
 * sortOrder are the server's: a change is "invalidProperties".
 */


#define NGX_HTTP_MAIL_PLUS_JMAP_NAME_MAX  490


typedef enum {
    ngx_mset_create = 0,
    ngx_mset_update,
    ngx_mset_destroy
} ngx_http_mail_plus_jmap_mset_kind_e;


typedef struct {
    ngx_http_mail_plus_jmap_mset_kind_e   kind;
    const char                           *key;   /* creation id, or id */
    json_t                               *obj;   /* create, update */

    /* what the job sends, in order: a verb and one or two names */
    const char                           *verb[2];
    ngx_str_t                             path;   /* the new name */
    ngx_str_t                             old;    /* RENAME's, DELETE's */
    ngx_int_t                             mailbox;  /* in the list, or -1 */
    ngx_uint_t                            step;
    unsigned                              subscribe:1;
    unsigned                              answered:1;  /* refused */
} ngx_http_mail_plus_jmap_mset_job_t;


typedef struct {
    ngx_http_mail_plus_jmap_set_t         set;     /* first: the frame's */
    ngx_http_mail_plus_jmap_call_t       *call;
    ngx_array_t                          *mailboxes;   /* the list before */
    u_char                                old_state[18];
    u_char                                delimiter;

    json_t                               *paths;   /* id -> name, of
                                                      those created */

    ngx_array_t                           jobs;
    ngx_uint_t                            job;
    ngx_uint_t                           *gone;    /* destroyed, by index */
    ngx_uint_t                            changed;
    ngx_uint_t                            examining;
} ngx_http_mail_plus_jmap_mset_t;


static ngx_int_t ngx_http_mail_plus_jmap_mailbox_set_handler(
    ngx_http_mail_plus_jmap_call_t *call);
static ngx_int_t ngx_http_mail_plus_jmap_mset_start(
    ngx_http_mail_plus_jmap_set_t *set);
static ngx_int_t ngx_http_mail_plus_jmap_mset_jobs(
    ngx_http_mail_plus_jmap_mset_t *st);
static ngx_int_t ngx_http_mail_plus_jmap_mset_next(
    ngx_http_mail_plus_jmap_mset_t *st);
static ngx_int_t ngx_http_mail_plus_jmap_mset_prepare(
    ngx_http_mail_plus_jmap_mset_t *st,
    ngx_http_mail_plus_jmap_mset_job_t *job);
static ngx_int_t ngx_http_mail_plus_jmap_mset_object(
    ngx_http_mail_plus_jmap_mset_t *st,
    ngx_http_mail_plus_jmap_mset_job_t *job,
    ngx_http_mail_plus_jmap_mailbox_t *mb, const char **bad);
static ngx_int_t ngx_http_mail_plus_jmap_mset_rename(
    ngx_http_mail_plus_jmap_mset_t *st,
    ngx_http_mail_plus_jmap_mset_job_t *job,
    ngx_http_mail_plus_jmap_mailbox_t *mb, ngx_str_t *name, json_t *parent,
    json_t *sub, const char **bad);
static ngx_int_t ngx_http_mail_plus_jmap_mset_path(
    ngx_http_mail_plus_jmap_mset_t *st, json_t *parent, ngx_str_t *name,
    ngx_str_t *path);
static ngx_int_t ngx_http_mail_plus_jmap_mset_name_ok(
    ngx_http_mail_plus_jmap_mset_t *st, ngx_str_t *name);
static ngx_int_t ngx_http_mail_plus_jmap_mset_destroyable(
    ngx_http_mail_plus_jmap_mset_t *st,
    ngx_http_mail_plus_jmap_mset_job_t *job,
    const char **error);
static ngx_int_t ngx_http_mail_plus_jmap_mset_send(
    ngx_http_mail_plus_jmap_mset_t *st,
    ngx_http_mail_plus_jmap_mset_job_t *job);
static void ngx_http_mail_plus_jmap_mset_handler(
    ngx_mail_plus_imap_cmd_t *cmd);
static ngx_int_t ngx_http_mail_plus_jmap_mset_done(
    ngx_http_mail_plus_jmap_mset_t *st,
    ngx_http_mail_plus_jmap_mset_job_t *job);
static ngx_int_t ngx_http_mail_plus_jmap_mset_fail(
    ngx_http_mail_plus_jmap_mset_t *st,
    ngx_http_mail_plus_jmap_mset_job_t *job,
    const char *type, const char *property, const char *description);
static ngx_int_t ngx_http_mail_plus_jmap_mset_answer(
    ngx_http_mail_plus_jmap_call_t *call);
static void ngx_http_mail_plus_jmap_mset_cleanup(void *data);


ngx_http_mail_plus_jmap_method_t  ngx_http_mail_plus_jmap_mailbox_set[] = {
    { "Mailbox/set", NGX_HTTP_MAIL_PLUS_JMAP_MAIL,
      ngx_http_mail_plus_jmap_mailbox_set_handler },
    { NULL, 0, NULL }
};


static ngx_int_t
ngx_http_mail_plus_jmap_mailbox_set_handler(
    ngx_http_mail_plus_jmap_call_t *call)
{
    json_t                          *v;
    ngx_int_t                        rc;
    ngx_pool_cleanup_t              *cln;
    ngx_http_mail_plus_jmap_mset_t  *st;

    st = ngx_pcalloc(call->request->pool,
                     sizeof(ngx_http_mail_plus_jmap_mset_t));
    if (st == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_mail_plus_jmap_set_start(call, &st->set);
    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : NGX_ERROR;
    }

    st->set.answer = ngx_http_mail_plus_jmap_mset_answer;

    v = json_object_get(call->args, "onDestroyRemoveEmails");
    if (v && !json_is_boolean(v)) {
        call->error = "invalidArguments";
        return NGX_OK;
    }

    cln = ngx_pool_cleanup_add(call->request->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    st->paths = json_object();
    if (st->paths == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_mail_plus_jmap_mset_cleanup;
    cln->data = st;

    st->set.begin = ngx_http_mail_plus_jmap_mset_start;
    st->call = call;
    call->data = st;

    return ngx_http_mail_plus_jmap_set_run(&st->set);
}


/* the list known: the state, ifInState, the delimiter, the jobs */

static ngx_int_t
ngx_http_mail_plus_jmap_mset_start(ngx_http_mail_plus_jmap_set_t *set)
{
    ngx_uint_t                          i;
    ngx_http_mail_plus_jmap_call_t     *call;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;
    ngx_http_mail_plus_jmap_mset_t     *st;

    st = (ngx_http_mail_plus_jmap_mset_t *) set;
    call = st->call;
    st->mailboxes = call->ctx->mailboxes;

    ngx_http_mail_plus_jmap_mailbox_state(st->mailboxes, st->old_state);

    if (ngx_http_mail_plus_jmap_set_in_state(&st->set, st->old_state,
                                             ngx_strlen(st->old_state))
        != NGX_OK)
    {
        return NGX_OK;
    }

    mb = st->mailboxes->elts;

    for (i = 0; i < st->mailboxes->nelts; i++) {
        if (mb[i].delimiter) {
            st->delimiter = mb[i].delimiter;
            break;
        }
    }

    st->gone = ngx_pcalloc(call->request->pool,
                           (st->mailboxes->nelts + 1) * sizeof(ngx_uint_t));
    if (st->gone == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_mail_plus_jmap_mset_jobs(st) != NGX_OK) {
        return NGX_ERROR;
    }

    st->job = 0;

    return ngx_http_mail_plus_jmap_mset_next(st);
}


static ngx_int_t
ngx_http_mail_plus_jmap_mset_jobs(ngx_http_mail_plus_jmap_mset_t *st)
{
    json_t                              *create, *update, *destroy, *v;
    size_t                               i, j, di, dj;
    const char                          *key;
    ngx_http_mail_plus_jmap_mset_job_t  *job, *jobs, tmp;

    create = json_object_get(st->call->args, "create");
    update = json_object_get(st->call->args, "update");
    destroy = json_object_get(st->call->args, "destroy");

    if (ngx_array_init(&st->jobs, st->call->request->pool,
                       json_object_size(create) + json_object_size(update)
                       + json_array_size(destroy) + 1,
                       sizeof(ngx_http_mail_plus_jmap_mset_job_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    json_object_foreach(create, key, v) {
        job = ngx_array_push(&st->jobs);
        if (job == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(job, sizeof(ngx_http_mail_plus_jmap_mset_job_t));
        job->kind = ngx_mset_create;
        job->key = key;
        job->obj = v;
        job->mailbox = -1;
    }

    json_object_foreach(update, key, v) {
        job = ngx_array_push(&st->jobs);
        if (job == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(job, sizeof(ngx_http_mail_plus_jmap_mset_job_t));
        job->kind = ngx_mset_update;
        job->key = key;
        job->obj = v;
        job->mailbox = -1;
    }

    for (i = 0; i < json_array_size(destroy); i++) {
        key = json_string_value(json_array_get(destroy, i));

        job = ngx_array_push(&st->jobs);
        if (job == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(job, sizeof(ngx_http_mail_plus_jmap_mset_job_t));
        job->kind = ngx_mset_destroy;
        job->key = key ? key : "";
        job->mailbox = -1;
    }

    /* the destroys' mailboxes found, then the deepest (longest name)
       first: children named in the same call go before their parents */

    jobs = st->jobs.elts;

    for (i = 0; i < st->jobs.nelts; i++) {
        if (jobs[i].kind != ngx_mset_destroy) {
            continue;
        }

        if (ngx_http_mail_plus_jmap_mset_prepare(st, &jobs[i]) == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < st->jobs.nelts; i++) {
        for (j = i + 1; j < st->jobs.nelts; j++) {
            if (jobs[i].kind != ngx_mset_destroy
                || jobs[j].kind != ngx_mset_destroy)
            {
                continue;
            }

            di = jobs[i].old.len;
            dj = jobs[j].old.len;

            if (dj > di) {
                tmp = jobs[i];
                jobs[i] = jobs[j];
                jobs[j] = tmp;
            }
        }
    }

    return NGX_OK;
}


/* the next job: checked, then its first command; or the end */

static ngx_int_t
ngx_http_mail_plus_jmap_mset_next(ngx_http_mail_plus_jmap_mset_t *st)
{
    ngx_int_t                            rc;
    ngx_http_mail_plus_jmap_mset_job_t  *job;

    for ( ;; ) {

        if (st->job == st->jobs.nelts) {
            return ngx_http_mail_plus_jmap_set_end(&st->set, st->changed);
        }

        job = (ngx_http_mail_plus_jmap_mset_job_t *) st->jobs.elts + st->job;

        if (job->answered) {
            rc = NGX_DECLINED;

        } else if (job->kind != ngx_mset_destroy) {
            rc = ngx_http_mail_plus_jmap_mset_prepare(st, job);

        } else {
            rc = ngx_http_mail_plus_jmap_mset_destroyable(st, job, NULL);
        }

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK && job->verb[0]) {
            job->step = 0;
            return ngx_http_mail_plus_jmap_mset_send(st, job);
        }

        if (rc == NGX_OK
            && ngx_http_mail_plus_jmap_mset_done(st, job) != NGX_OK)
        {
            return NGX_ERROR;
        }

        st->job++;
    }
}


/*
 * a create's or update's object checked and its commands chosen; a
 * destroy's mailbox found: NGX_OK, NGX_DECLINED (answered), NGX_ERROR
 */

static ngx_int_t
ngx_http_mail_plus_jmap_mset_prepare(ngx_http_mail_plus_jmap_mset_t *st,
    ngx_http_mail_plus_jmap_mset_job_t *job)
{
    ngx_int_t                           rc;
    const char                         *id, *bad;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    mb = NULL;

    if (job->kind != ngx_mset_create) {
        id = ngx_http_mail_plus_jmap_id(st->call->ctx, job->key);

        if (id && ngx_strlen(id) == 17) {
            mb = ngx_http_mail_plus_jmap_mailbox_find(st->mailboxes,
                                                      (u_char *) id);
        }

        if (mb == NULL || st->gone[mb - (ngx_http_mail_plus_jmap_mailbox_t *)
                                        st->mailboxes->elts])
        {
            return ngx_http_mail_plus_jmap_mset_fail(st, job, "notFound",
                                                     NULL, NULL);
        }

        job->mailbox = mb - (ngx_http_mail_plus_jmap_mailbox_t *)
                            st->mailboxes->elts;
        job->old = mb->path;

        if (job->kind == ngx_mset_destroy) {
            return NGX_OK;
        }
    }

    if (!json_is_object(job->obj)) {
        return ngx_http_mail_plus_jmap_mset_fail(st, job, "invalidArguments",
                                                 NULL, "not an object");
    }

    bad = NULL;

    rc = ngx_http_mail_plus_jmap_mset_object(st, job, mb, &bad);

    if (rc == NGX_DECLINED) {
        return ngx_http_mail_plus_jmap_mset_fail(st, job, "invalidProperties",
                                                 bad, NULL);
    }

    return rc;
}


/* the properties of a create or an update: the commands they need */

static ngx_int_t
ngx_http_mail_plus_jmap_mset_object(ngx_http_mail_plus_jmap_mset_t *st,
    ngx_http_mail_plus_jmap_mset_job_t *job,
    ngx_http_mail_plus_jmap_mailbox_t *mb, const char **bad)
{
    json_t                             *v, *parent, *sub;
    ngx_str_t                           name;
    const char                         *key;

    parent = NULL;
    sub = NULL;
    ngx_str_null(&name);

    json_object_foreach(job->obj, key, v) {

        *bad = key;

        if (ngx_strcmp(key, "name") == 0) {
            if (!json_is_string(v)) {
                return NGX_DECLINED;
            }

            name.data = (u_char *) json_string_value(v);
            name.len = json_string_length(v);

            if (ngx_http_mail_plus_jmap_mset_name_ok(st, &name) != NGX_OK) {
                return NGX_DECLINED;
            }

        } else if (ngx_strcmp(key, "parentId") == 0) {
            if (!json_is_null(v) && !json_is_string(v)) {
                return NGX_DECLINED;
            }

            parent = v;

        } else if (ngx_strcmp(key, "isSubscribed") == 0) {
            if (!json_is_boolean(v)) {
                return NGX_DECLINED;
            }

            sub = v;

        } else if (ngx_strcmp(key, "role") == 0) {
            if (!(json_is_null(v) && (mb == NULL || mb->role == NULL))
                && !(mb && mb->role && json_is_string(v)
                     && ngx_strcmp(json_string_value(v), mb->role) == 0))
            {
                return NGX_DECLINED;
            }

        } else if (ngx_strcmp(key, "sortOrder") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) != 0) {
                return NGX_DECLINED;
            }

        } else {
            return NGX_DECLINED;
        }
    }

    if (mb == NULL) {

        /* a create: a name, a parent or none */

        *bad = "name";

        if (name.data == NULL) {
            return NGX_DECLINED;
        }

        *bad = "parentId";

        if (ngx_http_mail_plus_jmap_mset_path(st, parent, &name, &job->path)
            != NGX_OK)
        {
            return NGX_DECLINED;
        }

        job->verb[0] = "CREATE";
        job->verb[1] = (sub && json_is_true(sub)) ? "SUBSCRIBE" : NULL;
        job->subscribe = (sub && json_is_true(sub));

        return NGX_OK;
    }

    return ngx_http_mail_plus_jmap_mset_rename(st, job, mb, &name, parent,
                                               sub, bad);
}


/*
 * an update's commands: RENAME where the name or the parent changes (not
 * the Inbox, not under itself), a change of subscription
 */

static ngx_int_t
ngx_http_mail_plus_jmap_mset_rename(ngx_http_mail_plus_jmap_mset_t *st,
    ngx_http_mail_plus_jmap_mset_job_t *job,
    ngx_http_mail_plus_jmap_mailbox_t *mb, ngx_str_t *name, json_t *parent,
    json_t *sub, const char **bad)
{
    if (name->data == NULL) {
        *name = mb->name;
    }

    *bad = "parentId";

    if (parent == NULL) {

        /* under the parent it has: its name's head, the new last level */

        job->path.len = mb->path.len - mb->name.len + name->len;
        job->path.data = ngx_pnalloc(st->call->request->pool, job->path.len);
        if (job->path.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(ngx_cpymem(job->path.data, mb->path.data,
                              mb->path.len - mb->name.len),
                   name->data, name->len);

    } else if (ngx_http_mail_plus_jmap_mset_path(st, parent, name,
                                                 &job->path)
               != NGX_OK)
    {
        return NGX_DECLINED;
    }

    job->verb[0] = NULL;

    if (job->path.len != mb->path.len
        || ngx_strncmp(job->path.data, mb->path.data, mb->path.len) != 0)
    {
        *bad = "name";

        if (mb->role && ngx_strcmp(mb->role, "inbox") == 0) {
            return NGX_DECLINED;
        }

        /* not under itself */

        if (job->path.len > mb->path.len
            && ngx_strncmp(job->path.data, mb->path.data, mb->path.len) == 0
            && job->path.data[mb->path.len] == st->delimiter)
        {
            *bad = "parentId";
            return NGX_DECLINED;
        }

        job->verb[0] = "RENAME";
    }

    if (sub) {
        job->subscribe = json_is_true(sub);
        job->verb[job->verb[0] ? 1 : 0] = job->subscribe ? "SUBSCRIBE"
                                                         : "UNSUBSCRIBE";
    }

    return NGX_OK;
}


/* the whole name under a parent (null: at the top), in the pool */

static ngx_int_t
ngx_http_mail_plus_jmap_mset_path(ngx_http_mail_plus_jmap_mset_t *st,
    json_t *parent, ngx_str_t *name, ngx_str_t *path)
{
    u_char                             *p;
    json_t                             *created;
    ngx_str_t                           base;
    const char                         *id;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    if (parent == NULL || json_is_null(parent)) {
        *path = *name;
        return NGX_OK;
    }

    if (st->delimiter == 0) {
        return NGX_DECLINED;
    }

    id = ngx_http_mail_plus_jmap_id(st->call->ctx, json_string_value(parent));

    if (id == NULL || ngx_strlen(id) != 17) {
        return NGX_DECLINED;
    }

    created = json_object_get(st->paths, id);

    if (created) {
        base.data = (u_char *) json_string_value(created);
        base.len = json_string_length(created);

    } else {
        mb = ngx_http_mail_plus_jmap_mailbox_find(st->mailboxes,
                                                  (u_char *) id);
        if (mb == NULL
            || st->gone[mb - (ngx_http_mail_plus_jmap_mailbox_t *)
                             st->mailboxes->elts])
        {
            return NGX_DECLINED;
        }

        base = mb->path;
    }

    path->len = base.len + 1 + name->len;
    path->data = ngx_pnalloc(st->call->request->pool, path->len);
    if (path->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(path->data, base.data, base.len);
    *p++ = st->delimiter;
    ngx_memcpy(p, name->data, name->len);

    return NGX_OK;
}


/* 1 to 490 bytes of UTF-8, no control character, delimiter, "*" or "%" */

static ngx_int_t
ngx_http_mail_plus_jmap_mset_name_ok(ngx_http_mail_plus_jmap_mset_t *st,
    ngx_str_t *name)
{
    u_char    *p, *last;
    uint32_t   c;

    if (name->len == 0 || name->len > NGX_HTTP_MAIL_PLUS_JMAP_NAME_MAX) {
        return NGX_DECLINED;
    }

    p = name->data;
    last = p + name->len;

    while (p < last) {

        if (*p < 0x80) {
            c = *p++;

        } else {
            c = ngx_utf8_decode(&p, last - p);

            if (c > 0x10ffff) {
                return NGX_DECLINED;
            }
        }

        if (c < 0x20 || (c >= 0x7f && c < 0xa0) || c == '*' || c == '%'
            || c == st->delimiter || c == 0x2028 || c == 0x2029)
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/*
 * a destroy: its mailbox found, without children left and, unless
 * onDestroyRemoveEmails, without messages; NGX_DECLINED answered
 */

static ngx_int_t
ngx_http_mail_plus_jmap_mset_destroyable(ngx_http_mail_plus_jmap_mset_t *st,
    ngx_http_mail_plus_jmap_mset_job_t *job, const char **error)
{
    ngx_int_t                           rc;
    ngx_uint_t                          i;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    if (job->mailbox < 0) {
        rc = ngx_http_mail_plus_jmap_mset_prepare(st, job);
        if (rc != NGX_OK) {
            return rc;
        }

    } else if (st->gone[job->mailbox]) {
        return ngx_http_mail_plus_jmap_mset_fail(st, job, "notFound", NULL,
                                                 NULL);
    }

    mb = st->mailboxes->elts;

    if (mb[job->mailbox].role
        && ngx_strcmp(mb[job->mailbox].role, "inbox") == 0)
    {
        return ngx_http_mail_plus_jmap_mset_fail(st, job, "forbidden", NULL,
                                                 "the Inbox stays");
    }

    for (i = 0; i < st->mailboxes->nelts; i++) {
        if (mb[i].parent == job->mailbox && !st->gone[i]) {
            return ngx_http_mail_plus_jmap_mset_fail(st, job,
                                                     "mailboxHasChild",
                                                     NULL, NULL);
        }
    }

    if (mb[job->mailbox].total
        && !json_is_true(json_object_get(st->call->args,
                                         "onDestroyRemoveEmails")))
    {
        return ngx_http_mail_plus_jmap_mset_fail(st, job, "mailboxHasEmail",
                                                 NULL, NULL);
    }

    job->verb[0] = "DELETE";
    job->verb[1] = mb[job->mailbox].subscribed ? "UNSUBSCRIBE" : NULL;

    return NGX_OK;
}


/* the job's command of its step */

static ngx_int_t
ngx_http_mail_plus_jmap_mset_send(ngx_http_mail_plus_jmap_mset_t *st,
    ngx_http_mail_plus_jmap_mset_job_t *job)
{
    ngx_int_t                  rc;
    ngx_str_t                 *name, inbox;
    ngx_mail_plus_imap_t      *imap;
    ngx_mail_plus_imap_cmd_t  *cmd;

    imap = ngx_http_mail_plus_jmap_imap(st->call->ctx);
    if (imap == NULL) {
        return NGX_ERROR;
    }

    cmd = ngx_mail_plus_imap_cmd(imap, st->call->request->pool);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    cmd->handler = ngx_http_mail_plus_jmap_mset_handler;
    cmd->data = st;

    /*
     * a mailbox selected is left first for the Inbox: a backend may end
     * the session when the mailbox it has selected is renamed or deleted
     * (Dovecot says BYE)
     */

    if (job->step == 0 && !st->examining && imap->selected.len
        && (ngx_strcmp(job->verb[0], "RENAME") == 0
            || ngx_strcmp(job->verb[0], "DELETE") == 0))
    {
        st->examining = 1;

        ngx_str_set(&inbox, "INBOX");

        if (ngx_mail_plus_imap_cmd_text(cmd, "EXAMINE ") != NGX_OK
            || ngx_mail_plus_imap_cmd_mailbox(cmd, &inbox) != NGX_OK
            || ngx_mail_plus_imap_send(cmd) != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, st->call->request->connection->log,
                       0, "jmap mailbox set: job %ui: EXAMINE INBOX first",
                       st->job);

        return NGX_AGAIN;
    }

    st->examining = 0;

    /* the name: DELETE's and a destroy's UNSUBSCRIBE the old, else new */

    name = (job->kind == ngx_mset_destroy) ? &job->old : &job->path;

    rc = ngx_mail_plus_imap_cmd_text(cmd, "%s ", job->verb[job->step]);

    if (rc == NGX_OK && job->step == 0 && job->kind == ngx_mset_update
        && ngx_strcmp(job->verb[0], "RENAME") == 0)
    {
        rc = ngx_mail_plus_imap_cmd_mailbox(cmd, &job->old);

        if (rc == NGX_OK) {
            rc = ngx_mail_plus_imap_cmd_text(cmd, " ");
        }
    }

    if (rc == NGX_OK) {
        rc = ngx_mail_plus_imap_cmd_mailbox(cmd, name);
    }

    if (rc != NGX_OK || ngx_mail_plus_imap_send(cmd) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, st->call->request->connection->log, 0,
                   "jmap mailbox set: job %ui: %s sent", st->job,
                   job->verb[job->step]);

    return NGX_AGAIN;
}


static void
ngx_http_mail_plus_jmap_mset_handler(ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_int_t                            rc;
    ngx_mail_plus_imap_value_t          *code;
    ngx_http_mail_plus_jmap_mset_t      *st;
    ngx_http_mail_plus_jmap_mset_job_t  *job;

    st = cmd->data;
    job = (ngx_http_mail_plus_jmap_mset_job_t *) st->jobs.elts + st->job;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, st->call->request->connection->log, 0,
                   "jmap mailbox set: job %ui step %ui: reply %i %d",
                   st->job, job->step, cmd->rc, (int) cmd->status);

    if (cmd->rc != NGX_OK) {
        st->call->error = "serverFail";
        st->call->description = cmd->imap->error;
        ngx_http_mail_plus_jmap_set_finish(&st->set, NGX_OK);
        return;
    }

    if (st->examining) {
        rc = ngx_http_mail_plus_jmap_mset_send(st, job);
        goto done;
    }

    if (job->step == 0) {

        if (cmd->status != NGX_MAIL_PLUS_IMAP_OK) {
            code = ngx_mail_plus_imap_item(cmd->code, 0);

            if (ngx_mail_plus_imap_atom_is(code, "ALREADYEXISTS", 13)) {
                rc = ngx_http_mail_plus_jmap_mset_fail(st, job,
                                          "invalidProperties", "name",
                                          "a mailbox of that name exists");

            } else if (ngx_mail_plus_imap_atom_is(code, "CANNOT", 6)) {
                rc = ngx_http_mail_plus_jmap_mset_fail(st, job,
                                          "invalidProperties", "name",
                                          "the backend refused the name");

            } else if (ngx_mail_plus_imap_atom_is(code, "NONEXISTENT", 11)) {
                rc = ngx_http_mail_plus_jmap_mset_fail(st, job, "notFound",
                                                       NULL, NULL);

            } else {
                rc = ngx_http_mail_plus_jmap_mset_fail(st, job, "serverFail",
                                                       NULL,
                                                       "the backend refused "
                                                       "it");
            }

            if (rc == NGX_ERROR) {
                goto done;
            }

            st->job++;
            rc = ngx_http_mail_plus_jmap_mset_next(st);
            goto done;
        }

        st->changed = 1;

        if (ngx_http_mail_plus_jmap_mset_done(st, job) != NGX_OK) {
            rc = NGX_ERROR;
            goto done;
        }

        if (job->verb[1]) {
            job->step = 1;
            rc = ngx_http_mail_plus_jmap_mset_send(st, job);
            goto done;
        }
    }

    /* a subscription refused leaves the rest as it is */

    st->job++;
    rc = ngx_http_mail_plus_jmap_mset_next(st);

done:

    if (rc != NGX_AGAIN) {
        ngx_http_mail_plus_jmap_set_finish(&st->set, rc);
    }
}


/* a job done at the backend: answered */

static ngx_int_t
ngx_http_mail_plus_jmap_mset_done(ngx_http_mail_plus_jmap_mset_t *st,
    ngx_http_mail_plus_jmap_mset_job_t *job)
{
    u_char  id[18];
    json_t  *v;

    switch (job->kind) {

    case ngx_mset_create:
        ngx_http_mail_plus_jmap_mailbox_id(&job->path, id);
        id[17] = '\0';

        v = json_pack("{sssnsisisisisisbs{sbsbsbsbsbsbsbsbsb}}",
                      "id", (const char *) id,
                      "role",
                      "sortOrder", 0,
                      "totalEmails", 0, "unreadEmails", 0,
                      "totalThreads", 0, "unreadThreads", 0,
                      "isSubscribed", (int) job->subscribe,
                      "myRights",
                      "mayReadItems", 1, "mayAddItems", 1,
                      "mayRemoveItems", 1, "maySetSeen", 1,
                      "maySetKeywords", 1, "mayCreateChild", 1,
                      "mayRename", 1, "mayDelete", 1, "maySubmit", 1);

        if (v == NULL
            || json_object_set_new(st->set.created, job->key, v) != 0
            || json_object_set_new(st->paths, (const char *) id,
                                   json_stringn((const char *) job->path.data,
                                                job->path.len))
               != 0
            || ngx_http_mail_plus_jmap_created(st->call->ctx, job->key,
                                               (const char *) id)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_OK;

    case ngx_mset_update:
        v = json_null();

        if (job->verb[0] && ngx_strcmp(job->verb[0], "RENAME") == 0) {
            ngx_http_mail_plus_jmap_mailbox_id(&job->path, id);
            id[17] = '\0';

            v = json_pack("{ss}", "id", (const char *) id);
            if (v == NULL) {
                return NGX_ERROR;
            }
        }

        return json_object_set_new(st->set.updated, job->key, v) == 0
               ? NGX_OK : NGX_ERROR;

    default: /* ngx_mset_destroy */
        st->gone[job->mailbox] = 1;

        return json_array_append_new(st->set.destroyed, json_string(job->key))
               == 0 ? NGX_OK : NGX_ERROR;
    }
}


/* a job refused: its SetError; NGX_DECLINED */

static ngx_int_t
ngx_http_mail_plus_jmap_mset_fail(ngx_http_mail_plus_jmap_mset_t *st,
    ngx_http_mail_plus_jmap_mset_job_t *job, const char *type,
    const char *property, const char *description)
{
    json_t  *into;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, st->call->request->connection->log, 0,
                   "jmap mailbox set: job %ui refused: %s", st->job, type);

    into = (job->kind == ngx_mset_create) ? st->set.not_created
           : (job->kind == ngx_mset_update) ? st->set.not_updated
           : st->set.not_destroyed;

    if (ngx_http_mail_plus_jmap_set_error(into, job->key, type, property,
                                          description)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    job->answered = 1;

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_mail_plus_jmap_mset_answer(ngx_http_mail_plus_jmap_call_t *call)
{
    u_char                           new_state[18];
    ngx_http_mail_plus_jmap_ctx_t   *ctx;
    ngx_http_mail_plus_jmap_mset_t  *st;

    st = call->data;
    ctx = call->ctx;
    ngx_memcpy(new_state, st->old_state, 18);

    if (st->changed && ctx->mailboxes) {
        ngx_http_mail_plus_jmap_mailbox_state(ctx->mailboxes, new_state);
    }

    return ngx_http_mail_plus_jmap_set_answer(&st->set, st->old_state,
                                              ngx_strlen(st->old_state),
                                              new_state,
                                              ngx_strlen(new_state));
}


static void
ngx_http_mail_plus_jmap_mset_cleanup(void *data)
{
    ngx_http_mail_plus_jmap_mset_t  *st = data;

    json_decref(st->paths);
}
