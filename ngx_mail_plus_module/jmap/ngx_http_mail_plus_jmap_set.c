
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_http_mail_plus_jmap.h"


/*
 * What every "/set" method shares (RFC 8620, section 5.3): its arguments
 * checked ("create", "update", "destroy", "ifInState", maxObjectsInSet),
 * the objects of its answer, SetErrors, ifInState, the answer itself.
 */


static void ngx_http_mail_plus_jmap_set_listed(
    ngx_http_mail_plus_jmap_call_t *call);
static void ngx_http_mail_plus_jmap_set_relisted(
    ngx_http_mail_plus_jmap_call_t *call);
static void ngx_http_mail_plus_jmap_set_cleanup(void *data);


ngx_int_t
ngx_http_mail_plus_jmap_set_start(ngx_http_mail_plus_jmap_call_t *call,
    ngx_http_mail_plus_jmap_set_t *set)
{
    json_t                              *v;
    size_t                               n;
    ngx_pool_cleanup_t                  *cln;
    ngx_http_mail_plus_jmap_loc_conf_t  *jlcf;

    if (ngx_http_mail_plus_jmap_account(call) != NGX_OK) {
        return NGX_DECLINED;
    }

    v = json_object_get(call->args, "create");
    if (v && !json_is_null(v) && !json_is_object(v)) {
        goto invalid;
    }

    if (ngx_http_mail_plus_jmap_creation_ids(call, v) != NGX_OK) {
        return NGX_DECLINED;
    }

    n = json_object_size(v);

    v = json_object_get(call->args, "update");
    if (v && !json_is_null(v) && !json_is_object(v)) {
        goto invalid;
    }

    n += json_object_size(v);

    v = json_object_get(call->args, "destroy");
    if (v && !json_is_null(v) && !json_is_array(v)) {
        goto invalid;
    }

    n += json_array_size(v);

    v = json_object_get(call->args, "ifInState");
    if (v && !json_is_null(v) && !json_is_string(v)) {
        goto invalid;
    }

    jlcf = ngx_http_get_module_loc_conf(call->request,
                                        ngx_http_mail_plus_jmap_module);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, call->request->connection->log, 0,
                   "jmap set: \"%s\" of %uz objects, at most %ui",
                   call->name, n, jlcf->max_objects_in_set);

    if (n > jlcf->max_objects_in_set) {
        call->error = "requestTooLarge";
        call->description = "more objects than maxObjectsInSet";
        return NGX_DECLINED;
    }

    cln = ngx_pool_cleanup_add(call->request->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_mail_plus_jmap_set_cleanup;
    cln->data = set;

    set->call = call;
    set->created = json_object();
    set->not_created = json_object();
    set->updated = json_object();
    set->not_updated = json_object();
    set->destroyed = json_array();
    set->not_destroyed = json_object();

    if (set->created == NULL || set->not_created == NULL
        || set->updated == NULL || set->not_updated == NULL
        || set->destroyed == NULL || set->not_destroyed == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;

invalid:

    call->error = "invalidArguments";
    return NGX_DECLINED;
}


/* ifInState against the state now: NGX_DECLINED, "stateMismatch" */

ngx_int_t
ngx_http_mail_plus_jmap_set_in_state(ngx_http_mail_plus_jmap_set_t *set,
    u_char *state, size_t len)
{
    const char  *s;

    s = json_string_value(json_object_get(set->call->args, "ifInState"));

    if (s == NULL
        || (ngx_strlen(s) == len && ngx_strncmp(s, state, len) == 0))
    {
        return NGX_OK;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, set->call->request->connection->log, 0,
                   "jmap set: state mismatch");

    set->call->error = "stateMismatch";

    return NGX_DECLINED;
}


/* a SetError {type, properties, description} under the key */

ngx_int_t
ngx_http_mail_plus_jmap_set_error(json_t *into, const char *key,
    const char *type, const char *property, const char *description)
{
    json_t  *err;

    err = json_pack("{ss}", "type", type);

    if (err == NULL
        || (property
            && json_object_set_new(err, "properties",
                                   json_pack("[s]", property))
               != 0)
        || (description
            && json_object_set_new(err, "description",
                                   json_string(description))
               != 0)
        || json_object_set_new(into, key, err) != 0)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_mail_plus_jmap_set_answer(ngx_http_mail_plus_jmap_set_t *set,
    u_char *old_state, size_t old_len, u_char *new_state, size_t new_len)
{
    json_t                         *res;
    ngx_http_mail_plus_jmap_ctx_t  *ctx;

    ctx = set->call->ctx;

    res = json_pack("{ss#ss#ss#sOsOsOsOsOsO}",
                    "accountId", (const char *) ctx->account_id.data,
                    (int) ctx->account_id.len,
                    "oldState", (const char *) old_state, (int) old_len,
                    "newState", (const char *) new_state, (int) new_len,
                    "created", set->created,
                    "notCreated", set->not_created,
                    "updated", set->updated,
                    "notUpdated", set->not_updated,
                    "destroyed", set->destroyed,
                    "notDestroyed", set->not_destroyed);
    if (res == NULL) {
        return NGX_ERROR;
    }

    set->call->result = res;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, set->call->request->connection->log, 0,
                   "jmap set: \"%s\" answered, %uz created, %uz updated, "
                   "%uz destroyed", set->call->name,
                   json_object_size(set->created),
                   json_object_size(set->updated),
                   json_array_size(set->destroyed));

    return NGX_OK;
}


/* a call that answered later: its answer given, or its error */

void
ngx_http_mail_plus_jmap_set_finish(ngx_http_mail_plus_jmap_set_t *set,
    ngx_int_t rc)
{
    if (rc == NGX_ERROR && set->call->error == NULL) {
        set->call->error = "serverFail";
    }

    ngx_http_mail_plus_jmap_done(set->call);
}


/* the list first, then the method's own start */

ngx_int_t
ngx_http_mail_plus_jmap_set_run(ngx_http_mail_plus_jmap_set_t *set)
{
    ngx_int_t  rc;

    rc = ngx_http_mail_plus_jmap_mailboxes(set->call,
                                           ngx_http_mail_plus_jmap_set_listed);
    if (rc != NGX_OK) {
        return rc;
    }

    return set->begin(set);
}


static void
ngx_http_mail_plus_jmap_set_listed(ngx_http_mail_plus_jmap_call_t *call)
{
    ngx_int_t                       rc;
    ngx_http_mail_plus_jmap_set_t  *set;

    set = call->data;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, call->request->connection->log, 0,
                   "http jmap set: mailbox list %s",
                   call->ctx->mailboxes ? "known" : "failed");

    rc = call->ctx->mailboxes ? set->begin(set) : NGX_OK;

    if (rc != NGX_AGAIN) {
        ngx_http_mail_plus_jmap_set_finish(set, rc);
    }
}


/*
 * all done at the backend: the state after is that of a new list, asked
 * if anything changed (ctx->mailboxes to NULL, as the header says)
 */

ngx_int_t
ngx_http_mail_plus_jmap_set_end(ngx_http_mail_plus_jmap_set_t *set,
    ngx_uint_t changed)
{
    ngx_int_t  rc;

    if (!changed) {
        return set->answer(set->call);
    }

    set->call->ctx->mailboxes = NULL;

    rc = ngx_http_mail_plus_jmap_mailboxes(set->call,
                                          ngx_http_mail_plus_jmap_set_relisted);
    if (rc != NGX_OK) {
        return rc;
    }

    return set->answer(set->call);
}


static void
ngx_http_mail_plus_jmap_set_relisted(ngx_http_mail_plus_jmap_call_t *call)
{
    ngx_http_mail_plus_jmap_set_t  *set;

    set = call->data;

    if (call->ctx->mailboxes == NULL) {
        /* the changes are made: they are answered, with the old state */
        call->error = NULL;
        call->description = NULL;
    }

    ngx_http_mail_plus_jmap_set_finish(set, set->answer(call));
}


static void
ngx_http_mail_plus_jmap_set_cleanup(void *data)
{
    ngx_http_mail_plus_jmap_set_t  *set = data;

    json_decref(set->created);
    json_decref(set->not_created);
    json_decref(set->updated);
    json_decref(set->not_updated);
    json_decref(set->destroyed);
    json_decref(set->not_destroyed);
}
