
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_HTTP_MAIL_PLUS_JMAP_EMAIL_H_INCLUDED_
#define _NGX_HTTP_MAIL_PLUS_JMAP_EMAIL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_http_mail_plus_jmap.h"


/*
 * What the read side of Email shares: Email/get and Thread/get
 * (ngx_http_mail_plus_jmap_email.c), Email/query
 * (ngx_http_mail_plus_jmap_query.c).
 */


/* a JMAP keyword ("$seen", "work"): NGX_OK if valid (RFC 8621 4.1.1) */
ngx_int_t ngx_http_mail_plus_jmap_keyword(const char *k);

ngx_int_t ngx_http_mail_plus_jmap_email_query(
    ngx_http_mail_plus_jmap_call_t *call);


#endif /* _NGX_HTTP_MAIL_PLUS_JMAP_EMAIL_H_INCLUDED_ */
