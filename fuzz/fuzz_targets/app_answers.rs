//! The app client's reading of the app's answers (status and body) to the four calls of the
//! contract, and what the gateway derives from them (membership rooms).
//!
//! Checked: no answer but a 200 with a user opens a session; a 401 never reads as anything
//! but "no session" / "unauthenticated"; a refusal's text stays short; membership rooms start
//! with the user's own room.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use socket_gateway::app::AppError;
use socket_gateway::fuzzing::app_answers;
use socket_gateway::gateway::room_names::{rooms_from_memberships, user_room};

#[derive(Arbitrary, Debug)]
struct Input {
    status: u16,
    body: Vec<u8>,
}

fuzz_target!(|input: Input| {
    // The interesting statuses more often than 1 in 65536.
    let status = match input.status % 8 {
        0 => 200,
        1 => 401,
        2 => 403,
        3 => 400,
        4 => 404,
        _ => input.status,
    };
    let Some(answers) = app_answers(status, &input.body) else {
        return;
    };
    if let Ok(Some(session)) = &answers.session {
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_slice(&input.body).expect("a 200 body read");
        assert_eq!(v["user"]["id"].as_str(), Some(session.user.id.as_str()));
    }
    if status == 401 {
        assert!(matches!(answers.session, Ok(None)));
        assert!(matches!(
            answers.memberships,
            Err(AppError::Unauthenticated { .. })
        ));
        assert!(matches!(
            answers.authorization,
            Err(AppError::Unauthenticated { .. })
        ));
        assert!(matches!(
            answers.event,
            Err(AppError::Unauthenticated { .. })
        ));
    }
    for e in [
        answers.authorization.as_ref().err(),
        answers.event.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    {
        if let AppError::Refused { error, .. } = e {
            assert!(error.chars().count() <= 200);
        }
    }
    if let Ok(m) = &answers.memberships {
        let rooms = rooms_from_memberships(m);
        assert_eq!(rooms.first(), Some(&user_room(&m.user_id)));
        assert_eq!(
            rooms.len(),
            1 + m.workspaces.len() + m.channels.len() + m.conversations.len()
        );
    }
});
