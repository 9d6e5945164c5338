
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_http_mail_plus_jmap.h"


/*
 * Email/set's create (RFC 8621, section 4.6): an Email object made into a
 * message and APPENDed to its mailbox.  This first version checks the
 * objects and answers each one in "notCreated".
 */


static json_t *ngx_http_mail_plus_jmap_set_error(const char *type,
    const char *description, const char *property);


ngx_int_t
ngx_http_mail_plus_jmap_email_create(ngx_http_mail_plus_jmap_call_t *call,
    json_t *create, json_t *created, json_t *not_created,
    ngx_http_mail_plus_jmap_next_pt next)
{
    json_t      *email, *mailbox_ids, *err;
    const char  *key;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, call->request->connection->log, 0,
                   "http jmap compose: create %uz",
                   (size_t) json_object_size(create));

    json_object_foreach(create, key, email) {

        mailbox_ids = json_object_get(email, "mailboxIds");

        if (!json_is_object(email)) {
            err = ngx_http_mail_plus_jmap_set_error("invalidProperties",
                                                    "not an object", NULL);

        } else if (!json_is_object(mailbox_ids)
                   || json_object_size(mailbox_ids) != 1)
        {
            err = ngx_http_mail_plus_jmap_set_error("invalidProperties",
                                              "exactly one mailbox is needed",
                                              "mailboxIds");

        } else {
            err = ngx_http_mail_plus_jmap_set_error("serverFail",
                                                "not implemented yet", NULL);
        }

        if (err == NULL || json_object_set_new(not_created, key, err) != 0) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static json_t *
ngx_http_mail_plus_jmap_set_error(const char *type, const char *description,
    const char *property)
{
    if (property) {
        return json_pack("{s:s, s:s, s:[s]}", "type", type,
                         "description", description, "properties", property);
    }

    return json_pack("{s:s, s:s}", "type", type, "description", description);
}
