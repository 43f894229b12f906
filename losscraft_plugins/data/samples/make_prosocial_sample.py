"""Write ``prosocial_dialog_sample.jsonl``: a project-written sample in ProsocialDialog's schema.

Nothing here comes from the real dataset (allenai/prosocial-dialog, CC-BY-4.0); every line is
hand-written for losscraft so that the package ships a usable offline default. Contents are mild.

Layout (same columns as the real release, plus ``split``):
    context, response, rots (list), safety_label, safety_annotations (3 labels),
    safety_annotation_reasons (3 texts), source, etc, dialogue_id, response_id, episode_done,
    split (train / validation / test; one file, split marked per row, whole dialogues per split)

Each problematic situation yields two dialogues (two phrasings); turns follow the real dataset's
shape: a problematic context, guidance with a rule of thumb, push-back, more guidance, and often a
``__casual__`` turn where the speaker comes round. A few dialogues are casual throughout.

Deterministic: ``python make_prosocial_sample.py`` rewrites the same file byte for byte.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

try:  # imported as part of the package (tests) or run as a script from this folder
    from .make_scenario_rows import prosocial_rows
except ImportError:
    from make_scenario_rows import prosocial_rows

OUT = Path(__file__).with_name("prosocial_dialog_sample.jsonl")
WORDS = {"__casual__": "casual", "__possibly_needs_caution__": "possibly needs caution",
         "__probably_needs_caution__": "probably needs caution",
         "__needs_caution__": "needs caution", "__needs_intervention__": "needs intervention"}
ORDER = list(WORDS)
GENERIC_PUSHES = [
    "Come on, everyone does it.", "Why should I care what other people think?",
    "You're overreacting, it's really not a big deal.", "It's my life, I can do what I want.",
    "Whatever, I don't see the problem.", "That sounds like a lot of effort for nothing.",
]
GENERIC_ACKS = [
    "I hear you, and I know it can feel that way.", "I understand why you might think so.",
    "I get that it seems small right now.", "It's true that it's your choice in the end.",
    "I know it's not what you want to hear.", "That's a fair feeling to have.",
]
GENERIC_ASKS = [
    "Would you be open to trying a different approach?", "How would you feel in their place?",
    "Could you think about it a little longer before you decide?",
    "What do you think would happen if you tried the other way?",
]
ACCEPTS = [
    "Okay, you're right. I'll try that.", "Fine, I guess that makes sense.",
    "Thanks, I didn't think about it that way.", "Alright, I'll give it a shot tomorrow.",
    "Yeah, maybe I should do that.", "Okay, I'll think about it some more.",
]
CLOSINGS = [
    "I'm glad to hear that. I hope it goes well!", "That's great. Good luck, you've got this!",
    "I think that's a really good decision. Take care!",
    "It takes courage to change your mind. I'm happy for you!",
]
ACCEPT_ROTS = ["It's good to be open to advice.", "It's good to reflect on your actions."]
#: Turn plans, cycled over the problematic dialogues (average 3.5 turns).
PLANS = [("open", "push", "accept"), ("open", "push", "generic", "accept"), ("open", "accept"),
         ("open", "push", "generic"), ("open", "push", "generic", "accept"),
         ("open", "push", "generic", "generic", "accept"), ("open", "push", "accept"),
         ("open", "push", "generic", "accept")]



def S(key, source, label, push_label, topic, openers, rots, replies, pushes, push_rots,
      push_replies):
    return {"key": key, "source": source, "label": label, "push_label": push_label,
            "topic": topic, "openers": openers, "rots": rots, "replies": replies,
            "pushes": pushes, "push_rots": push_rots, "push_replies": push_replies}


P1, P2, P3, P4 = ("__possibly_needs_caution__", "__probably_needs_caution__",
                  "__needs_caution__", "__needs_intervention__")
SITUATIONS = [
    # --- possibly needs caution ---
    S("skip_class", "socialchemistry", P1, P1, "skipping class",
      ("I'm going to skip my morning class tomorrow so I can sleep in.",
       "I skipped my lecture again today. It's so boring anyway."),
      ["It's irresponsible to skip class regularly.", "You should take your education seriously."],
      ("It's normal to feel tired, but skipping class can make you fall behind quickly. Could "
       "you go to bed a little earlier tonight instead?",
       "Some lectures really are dull, but missing them adds up and the exams won't be any "
       "easier. Is there a way to make the class more engaging for you, like studying with a "
       "friend?"),
      ("I can just borrow someone's notes.", "I'm paying for it, so I can skip if I want."),
      ["It's good to take responsibility for your own learning."],
      ("Notes help, but they don't replace hearing the explanations and asking questions. If "
       "you keep relying on others, it might also strain those friendships.",
       "That's true, it's your choice. Still, you're paying for the chance to learn, so it "
       "would be a shame to waste it. Maybe try going for a week and see how it feels?")),
    S("roommate_food", "socialchemistry", P1, P2, "eating a roommate's food",
      ("I ate my roommate's leftovers without asking her.",
       "I keep eating my roommate's snacks when he's out."),
      ["It's rude to take other people's food without asking.",
       "You should respect your roommate's belongings."],
      ("I get that it was tempting, but she might have been planning to eat that. It would be "
       "kind to apologise and replace it.",
       "Living together means sharing a lot, but food someone bought is still theirs. How about "
       "asking him first, or buying some snacks to share?"),
      ("She never notices anyway.", "He's got plenty, he won't miss a few."),
      ["It's wrong to take advantage of someone just because they won't notice."],
      ("Even if she doesn't notice now, it could cause tension when she does. Being honest "
       "keeps the trust between you.",
       "It may seem small, but it's still taking something that isn't yours. Roommates get "
       "along much better when they ask first.")),
    S("ignore_texts", "socialchemistry", P1, P1, "ignoring a friend's messages",
      ("I've been ignoring my friend's texts because she talks way too much.",
       "I just leave my best friend on read when I don't feel like talking."),
      ["It's hurtful to ignore your friends.", "You should communicate honestly with friends."],
      ("It's okay to need a break, but silence can really hurt her feelings. Could you tell her "
       "kindly that you need some space sometimes?",
       "Everyone needs quiet time, but being left on read can feel like rejection. Maybe send a "
       "quick note saying you'll reply later?"),
      ("Telling her would just make it awkward.", "He should get the hint by now."),
      ["It's better to be honest than to let a friend guess."],
      ("A short awkward talk is usually easier than a friendship slowly fading. She would "
       "probably appreciate knowing how you feel.",
       "People often don't get hints, and they end up worrying they did something wrong. A "
       "gentle, honest message would be fairer to him.")),
    S("regift", "socialchemistry", P1, P1, "regifting a present",
      ("I'm going to regift the sweater my aunt gave me to my coworker.",
       "I always regift the presents I don't like."),
      ["It's okay to regift, but you should be thoughtful about it.",
       "It's good to appreciate the thought behind a gift."],
      ("Regifting can be fine if your coworker will really like it. Just make sure your aunt "
       "won't find out and feel hurt.",
       "Giving a present a better home isn't terrible, but try to make sure it fits the person "
       "you're giving it to, not just that you want to get rid of it."),
      ("My aunt will never know.", "Nobody cares where a gift came from."),
      ["You should think about others' feelings when handling gifts."],
      ("Probably not, and that's fine. Just remember she picked it for you, so a thank-you note "
       "would still be kind.",
       "Most people care more that the gift suits them. If it does, that's what matters.")),
    S("skip_chores", "socialchemistry", P1, P2, "skipping promised chores",
      ("I told my parents I'd do the dishes, but I'm just going to leave them.",
       "I said I would clean the bathroom this week but I'm not going to."),
      ["You should keep your promises.", "It's good to do your share of the housework."],
      ("I understand chores are boring, but your parents are counting on you. Could you do them "
       "quickly now and relax afterwards?",
       "Nobody loves cleaning, but when you skip your part, someone else has to do it. How "
       "about doing it with some music on?"),
      ("They'll just do it themselves like always.", "My roommates never clean either."),
      ["It's unfair to leave your responsibilities to others."],
      ("That's exactly the problem: they end up doing extra work because of you. Helping out "
       "shows you appreciate them.",
       "Maybe, but someone has to start. If you clean, it's easier to ask them to do their part "
       "too.")),
    S("always_late", "socialchemistry", P1, P1, "being late to meet friends",
      ("I'm always late to meet my friends, but they can wait.",
       "I showed up an hour late to dinner with my friends again."),
      ["It's disrespectful to keep people waiting.", "You should value other people's time."],
      ("Being late once in a while happens, but always making them wait can feel like you don't "
       "value their time. Could you try leaving fifteen minutes earlier?",
       "An hour is a long time to wait. It would be kind to apologise and maybe let them know "
       "in advance next time you're running behind."),
      ("They're my friends, they're used to it.", "It's not like they had anything better to "
                                                   "do."),
      ["It's important to be considerate of your friends."],
      ("Being used to something isn't the same as being okay with it. They might just be too "
       "polite to say it bothers them.",
       "Their time matters as much as yours. A quick text when you're late goes a long way.")),
    S("spoilers", "socialchemistry", P1, P1, "spoiling a movie for others",
      ("I'm going to post spoilers for the new movie everywhere tomorrow.",
       "I told my brother the ending of the show he was watching just to annoy him."),
      ["It's rude to spoil stories for others.", "You shouldn't ruin other people's fun."],
      ("That might be fun for you, but it would ruin the movie for lots of people who are "
       "excited about it. Why not talk about it with friends who've already seen it?",
       "Teasing siblings is common, but spoiling the show takes away something he was enjoying. "
       "Maybe apologise and find a different game to play?"),
      ("People should stay off the internet if they care so much.",
       "He does annoying stuff to me too."),
      ["It's good to treat others the way you want to be treated."],
      ("It's hard to avoid the internet completely, though. Using a spoiler warning is an easy "
       "way to share your thoughts without ruining it for anyone.",
       "It sounds like you two get on each other's nerves. Talking about what bugs you might "
       "work better than getting even.")),
    S("keep_hoodie", "socialchemistry", P1, P1, "keeping borrowed things",
      ("I borrowed my brother's hoodie months ago and I'm not giving it back.",
       "My friend lent me a book last year and I'm just going to keep it."),
      ["You should return things you borrow.", "It's good to respect other people's property."],
      ("I can see why you like it, but it's still his. You could ask if he'd let you keep it, "
       "or offer to trade something.",
       "It's easy to forget about borrowed things, but your friend might want it back. Why not "
       "return it, or ask whether you can keep it?"),
      ("He has like five other hoodies.", "She's probably forgotten about it."),
      ["It's wrong to keep things that aren't yours."],
      ("Even so, it's his choice what happens to it. Asking him is simple and fair.",
       "Maybe, but if she remembers, she might feel let down. Returning it is a nice way to "
       "show you're trustworthy.")),
    S("loud_music", "socialchemistry", P1, P2, "playing loud music at night",
      ("I like playing loud music late at night even though my neighbors complain.",
       "I practice drums at midnight because that's when I have time."),
      ["You should be considerate of your neighbors.", "It's rude to disturb people at night."],
      ("Music is a great way to unwind, but your neighbours probably need to sleep. Could you "
       "use headphones after a certain hour?",
       "It's great that you're practising, but midnight drumming can keep people awake. Maybe "
       "look into an electronic kit or a rehearsal space?"),
      ("It's my apartment, I can do what I want in it.", "They can buy earplugs."),
      ["It's important to respect shared living spaces."],
      ("It is your home, but sound travels into theirs. Finding a compromise keeps things "
       "friendly between you.",
       "They could, but it's kinder not to put that on them. Respecting quiet hours helps "
       "everyone in the building.")),
    S("harsh_review", "socialchemistry", P1, P1, "writing an unfair review",
      ("I want to write a one-star review for a cafe because the barista was a bit slow.",
       "I'm going to leave a bad review for a restaurant I've never even been to."),
      ["It's unfair to post reviews that aren't honest.", "You should be fair to small "
                                                         "businesses."],
      ("Slow service is frustrating, but a one-star review can really hurt a small business. "
       "Maybe mention it politely to the staff instead?",
       "Reviews help people decide where to go, so a fake one can mislead them and hurt the "
       "owners. Why not try the place first?"),
      ("Reviews are just opinions.", "My friend said it was bad, that's enough."),
      ["It's good to be honest and fair in public reviews."],
      ("They are, but they should be honest ones. A fair review can mention the slow service "
       "without being harsh.",
       "Your friend's experience is worth something, but it's theirs to share. You could "
       "encourage them to write the review themselves.")),
    # --- probably needs caution ---
    S("lie_friends", "socialchemistry", P2, P1, "lying to friends",
      ("I told my friends I was sick so I could skip their party and stay home.",
       "I lied to my friends about being busy because I didn't want to hang out."),
      ["It's wrong to lie to your friends.", "You should be honest about how you feel."],
      ("It's okay to want a quiet night, but lying can hurt their trust if they find out. Could "
       "you just tell them you need some time to yourself next time?",
       "Everyone needs time alone, but your friends would probably understand if you were "
       "honest. Lies tend to grow and get harder to keep up."),
      ("They'll never find out, so what's the harm?", "It's just a small white lie."),
      ["It's important to build trust in friendships."],
      ("Even if they don't, you'll know, and small lies can make friendships feel distant. "
       "Honesty usually makes things easier in the long run.",
       "White lies can seem harmless, but they add up. Your friends care about you and would "
       "rather know the truth.")),
    S("cheat_games", "socialchemistry", P2, P2, "cheating at games",
      ("I cheat at board games with my family because I hate losing.",
       "I use a glitch to win online matches against other players."),
      ["It's wrong to cheat, even in games.", "You should play fair."],
      ("Losing can be frustrating, but cheating takes the fun away for everyone. Maybe pick "
       "games where luck matters more, or focus on having fun together?",
       "Winning feels great, but the other players are trying to play fairly. Using a glitch "
       "isn't fair to them. How about practising to get better instead?"),
      ("It's just a game, who cares?", "Everybody else uses it too."),
      ["It's good to be a gracious loser."],
      ("It is just a game, and that's why winning shouldn't matter so much. Playing fair makes "
       "the game better for everyone, including you.",
       "Even if others do it, it doesn't make it fair. Reporting the glitch could help fix the "
       "game for everyone.")),
    S("copy_homework", "ethics_amt", P2, P2, "copying homework",
      ("I copied my classmate's homework and handed it in as my own.",
       "I'm going to copy my friend's essay and just change a few words."),
      ["It's wrong to cheat on schoolwork.", "You should do your own work."],
      ("I understand you might have been overwhelmed, but copying is dishonest and could get "
       "you both in trouble. Could you talk to your teacher about extra help?",
       "Essays can be stressful, but this is plagiarism and it could hurt you and your friend. "
       "Why not ask for an extension instead?"),
      ("Everyone copies homework sometimes.", "The teacher never checks anyway."),
      ["It's important to be honest in school."],
      ("It might feel that way, but you're the one who misses out on learning. The exam will "
       "show what you really know.",
       "Even if they don't check, you lose the practice, and your friend takes a risk for you. "
       "Doing it yourself is worth it.")),
    S("mock_accent", "sbic", P2, P3, "mocking a coworker",
      ("I make fun of my coworker's accent behind his back.",
       "My friends and I laugh at the new girl's clothes at school."),
      ["It's wrong to make fun of people.", "You should treat others with respect."],
      ("It might seem like harmless fun, but mocking someone's accent can make them feel "
       "unwelcome. How would you feel if people did that to you?",
       "Laughing at someone for how she looks can really hurt, especially when she's new. "
       "Could you try getting to know her instead?"),
      ("He can't even hear us, so it doesn't matter.", "It's just a joke, she should toughen "
                                                       "up."),
      ["It's hurtful to talk about people behind their backs."],
      ("People often find out, and it can make work miserable for them. Treating him kindly "
       "costs you nothing.",
       "Jokes are only funny when everyone can laugh. Being new is hard enough already.")),
    S("exclude_kid", "socialchemistry", P2, P2, "excluding a child",
      ("I told my son not to invite the new kid to his birthday party.",
       "I don't let my daughter play with the neighbor's kids because they're weird."),
      ["It's unkind to exclude children.", "You should teach children to be inclusive."],
      ("I understand wanting the party to go smoothly, but being left out can really hurt a new "
       "kid. Maybe your son could give him a chance?",
       "It's natural to be protective, but calling kids weird might teach your daughter to "
       "judge others quickly. Could you meet the family first?"),
      ("I don't know anything about his family.", "My kid, my rules."),
      ["It's good to give people a fair chance."],
      ("That's a good reason to meet them! Inviting him could be a nice way to get to know the "
       "family.",
       "You do get to decide, and that's why your example matters so much. Kindness is a great "
       "thing to teach.")),
    S("fake_sick_work", "ethics_amt", P2, P1, "faking a sick day",
      ("I'm going to call in sick to work so I can go to a concert.",
       "I faked being sick to get out of a boring meeting."),
      ["It's dishonest to lie to your employer.", "You should be honest at work."],
      ("Concerts are exciting, but calling in sick leaves your team covering for you. Could you "
       "ask for the day off properly?",
       "Boring meetings happen, but faking illness can damage trust with your boss. Maybe ask "
       "if you really need to attend next time?"),
      ("My boss would never give me the day off.", "Everyone at my job does it."),
      ["It's good to communicate openly with your boss."],
      ("You won't know unless you ask, and asking early gives them time to plan. If they say "
       "no, at least you've been honest.",
       "It may be common, but it still puts extra work on your coworkers. Being straightforward "
       "earns you respect.")),
    S("spread_rumor", "sbic", P2, P2, "spreading rumors",
      ("I spread a rumor that my classmate failed her exam.",
       "I told everyone that my coworker is about to get fired, even though I'm not sure."),
      ["It's wrong to spread rumors.", "You shouldn't gossip about other people."],
      ("That could really embarrass her, especially if it isn't true. Would you be willing to "
       "correct it and apologise?",
       "Rumours like that can hurt someone's reputation and cause a lot of stress. It would be "
       "kind to stop and set the record straight."),
      ("It's probably true anyway.", "I'm just saying what I heard."),
      ["It's important to respect others' privacy."],
      ("Even if it's true, it's her private business. Sharing it can make her feel humiliated.",
       "Passing along what you heard still spreads it. It's better to let people share their "
       "own news.")),
    S("read_diary", "socialchemistry", P2, P2, "reading someone's diary",
      ("I read my sister's diary when she wasn't home.",
       "I looked through my roommate's journal while he was in the shower."),
      ["It's wrong to invade someone's privacy.", "You should respect other people's personal "
                                                  "things."],
      ("I understand being curious, but a diary is very private. She might feel betrayed if she "
       "found out. Could you apologise to her?",
       "Curiosity is natural, but his journal is his private space. It would be fair to tell "
       "him and promise not to do it again."),
      ("I was worried about her.", "I didn't read much."),
      ["It's better to talk to people directly than to snoop."],
      ("It's kind that you care, but asking her directly shows more respect. She might open up "
       "if she feels safe.",
       "Even a little can feel like a big violation. Being honest about it will help rebuild "
       "trust.")),
    S("keep_change", "ethics_amt", P2, P1, "keeping extra change",
      ("The cashier gave me too much change and I just kept it.",
       "The store forgot to charge me for one item and I didn't say anything."),
      ["It's honest to return money that isn't yours.", "You should point out mistakes that "
                                                        "benefit you."],
      ("It's tempting, but the cashier might have to pay the difference. Could you go back and "
       "return it?",
       "It's an easy thing to let slide, but the mistake might cost the store or the worker. "
       "Going back to pay would be the honest thing."),
      ("It's a big company, they won't miss it.", "It was their mistake, not mine."),
      ["It's good to be honest even when it costs you."],
      ("The company might not, but the worker sometimes has to cover it. A small act of honesty "
       "makes a big difference to them.",
       "It was their mistake, but you can still choose to fix it. That's what an honest person "
       "would do.")),
    S("cancel_move", "socialchemistry", P2, P2, "breaking a promise",
      ("I promised to help my friend move, but I'm going to cancel the night before.",
       "I told my friend I'd drive her to the airport but I'd rather sleep in."),
      ["You should keep your promises to friends.", "It's inconsiderate to cancel last "
                                                    "minute."],
      ("I get that moving is hard work, but cancelling at the last minute leaves your friend "
       "stuck. Could you at least help for a few hours?",
       "Early mornings are rough, but she's counting on you. If you really can't, let her know "
       "now so she can find another ride."),
      ("They have other friends who can help.", "She can just take a taxi."),
      ["It's important to be reliable."],
      ("Maybe, but your friend asked you. Being someone people can count on is worth a lot.",
       "She could, but she trusted you to help. Telling her early is the least you could do.")),
    # --- needs caution ---
    S("revenge_ex", "socialchemistry", P3, P3, "wanting revenge on an ex",
      ("I want to get back at my ex for breaking up with me.",
       "I'm going to post embarrassing photos of my ex online."),
      ["It's wrong to seek revenge.", "You should respect people's decisions to leave a "
                                      "relationship."],
      ("Breakups hurt a lot, and it's normal to feel angry. But revenge usually makes the pain "
       "last longer. Could you talk to a friend about how you feel instead?",
       "I can tell you're really hurt, but posting embarrassing photos could humiliate them and "
       "even get you in trouble. What would help you move on?"),
      ("They deserve to feel as bad as I do.", "They hurt me first."),
      ["It's healthier to let go of anger than to act on it."],
      ("Your feelings are valid, but hurting them won't make you feel better for long. Focusing "
       "on yourself will help you heal.",
       "Being hurt doesn't make hurting back right. You deserve to move on without carrying "
       "this.")),
    S("rude_waiter", "socialchemistry", P3, P2, "being rude to a waiter",
      ("I yelled at a waiter today because my order took too long.",
       "I always snap at restaurant staff when they mess up my order."),
      ["It's wrong to be rude to people who serve you.", "You should be patient with service "
                                                         "workers."],
      ("Waiting when you're hungry is frustrating, but the waiter probably wasn't the cause of "
       "the delay. It would be kind to apologise next time you're there.",
       "Mistakes are annoying, but snapping at staff can ruin their whole day. Could you calmly "
       "point out the problem instead?"),
      ("It's their job to get it right.", "I'm the customer, they should be nice to me."),
      ["It's good to treat everyone with courtesy."],
      ("It is their job, but everyone makes mistakes. Being polite usually gets things fixed "
       "faster anyway.",
       "Being a customer doesn't make rudeness okay. Kindness goes both ways.")),
    S("partner_phone", "socialchemistry", P3, P3, "snooping through a partner's phone",
      ("I secretly go through my girlfriend's phone every night.",
       "I check my husband's messages when he's asleep."),
      ["It's wrong to invade your partner's privacy.", "Relationships should be built on "
                                                       "trust."],
      ("It sounds like you might be feeling insecure. Going through her phone can break her "
       "trust. Could you talk to her about what's worrying you?",
       "If you feel the need to check, something might be bothering you. An honest conversation "
       "with him would probably help more."),
      ("If she has nothing to hide, it shouldn't matter.", "I just want to make sure he's not "
                                                           "cheating."),
      ["It's important to communicate openly in relationships."],
      ("Everyone deserves some privacy, even in a relationship. If trust is the problem, "
       "talking about it is the way forward.",
       "I understand the worry, but checking secretly won't build trust. Maybe couples "
       "counselling could help you both.")),
    S("sabotage_coworker", "ethics_amt", P3, P3, "sabotaging a coworker",
      ("I'm going to delete my coworker's files because he took credit for my work.",
       "I want to make my coworker look bad in front of our boss."),
      ["It's wrong to sabotage other people's work.", "You should handle workplace conflicts "
                                                      "professionally."],
      ("It's really unfair that he took credit, and you have every right to be upset. But "
       "deleting his files could get you fired. Could you talk to your manager with proof of "
       "your work?",
       "It sounds like there's a lot of tension. Trying to make her look bad could backfire on "
       "you. What if you spoke to her directly or to HR?"),
      ("He started it, so he deserves it.", "She's always been mean to me."),
      ["It's better to solve problems than to get even."],
      ("He may have wronged you, but sabotage makes you the one in trouble. Standing up for "
       "yourself the right way is stronger.",
       "That sounds hard to deal with. Keeping notes and talking to your manager is safer than "
       "getting even.")),
    S("office_supplies", "ethics_amt", P3, P2, "taking things from work",
      ("I take office supplies home from work all the time.",
       "I take snacks from the office kitchen to stock my pantry at home."),
      ["It's wrong to steal from your employer.", "You should only take what you are allowed "
                                                  "to."],
      ("It might seem harmless, but taking supplies home is still stealing. Could you ask your "
       "manager if it's okay to borrow some?",
       "Office snacks are for everyone at work, not for stocking up at home. Maybe just enjoy "
       "them while you're there?"),
      ("They're just pens, nobody will notice.", "The company makes plenty of money."),
      ["It's important to be honest at work."],
      ("It's small, but small things still add up. And being trusted at work is worth more "
       "than a few pens.",
       "Even so, your coworkers share those snacks too. Taking extra means less for them.")),
    S("mean_comments", "sbic", P3, P3, "posting mean comments",
      ("I leave mean comments on a streamer's videos because it's funny.",
       "I make fake accounts to insult people in online games."),
      ["It's wrong to harass people online.", "You should treat people online with the same "
                                              "kindness as in person."],
      ("It might feel funny, but there's a real person reading those comments. How would you "
       "feel if someone did that to you?",
       "Online games can get heated, but insulting people can really hurt them. Could you use "
       "the mute button and just enjoy the game?"),
      ("They're famous, they can handle it.", "It's the internet, nobody takes it seriously."),
      ["It's hurtful to insult people, online or not."],
      ("Famous people still have feelings. Kind or constructive comments are much better.",
       "Many people do take it seriously, and it can affect them a lot. Being kind online "
       "matters too.")),
    S("blame_brother", "socialchemistry", P3, P2, "blaming someone else",
      ("I broke the vase and told my mom my little brother did it.",
       "I scratched my dad's car and said it was the neighbor's kid."),
      ["It's wrong to blame others for your mistakes.", "You should take responsibility for "
                                                        "what you do."],
      ("It's scary to admit mistakes, but your brother might get punished for something he "
       "didn't do. Could you tell your mom the truth?",
       "Accidents happen, but blaming the neighbour's kid is unfair to him and his family. "
       "Telling your dad the truth is the right move."),
      ("I'd get in so much trouble.", "Nobody saw me do it."),
      ["It's brave to own up to your mistakes."],
      ("You might, but being honest usually makes parents more forgiving. And your brother "
       "would be grateful.",
       "Even if nobody saw, you know. Owning up will feel better than carrying the secret.")),
    S("cut_line", "socialchemistry", P3, P2, "cutting in line",
      ("I cut in front of an elderly man in line at the store.",
       "I always push to the front of the line at the bus stop."),
      ["It's rude to cut in line.", "You should be patient and wait your turn."],
      ("I get that you were in a hurry, but he was waiting too, and it's not fair to skip him. "
       "Next time you could ask politely if you can go ahead.",
       "Waiting is annoying, but everyone at the bus stop has somewhere to be. Waiting your turn "
       "is fairer to them."),
      ("He was slow anyway.", "I have more important things to do."),
      ["It's important to respect elders."],
      ("He may be slower, but he deserves the same respect as anyone. A little patience is a "
       "kind gift.",
       "Everyone's plans matter to them. If you're rushed, leaving a bit earlier might help.")),
    S("fake_resume", "ethics_amt", P3, P3, "lying on a resume",
      ("I'm lying on my resume about having a degree.",
       "I made up a previous job on my job application."),
      ["It's dishonest to lie on job applications.", "You should present yourself truthfully."],
      ("It's understandable to want a better job, but employers often check degrees, and you "
       "could lose the job later. Could you highlight your real skills instead?",
       "Job hunting is stressful, but made-up experience can be discovered easily. Your real "
       "experience is worth showing."),
      ("Everyone exaggerates on their resume.", "I'm sure I can do the job anyway."),
      ["It's important to build your career on honesty."],
      ("Exaggerating and making things up are different. Being truthful protects you in the "
       "long run.",
       "You might be great at it! Then show that in the interview without the made-up part.")),
    S("disabled_spot", "socialchemistry", P3, P3, "parking in a disabled spot",
      ("I park in the disabled spot because it's closer to the door.",
       "I use my grandma's disabled parking pass when I go shopping alone."),
      ["It's wrong to take accessible parking you don't need.", "You should consider the needs "
                                                                 "of people with disabilities."],
      ("I understand it's convenient, but those spots are for people who really need them. "
       "Could you park a little further away?",
       "The pass is meant for when your grandma is with you. Someone who needs that spot might "
       "have to struggle because of it."),
      ("I'm only there for five minutes.", "There are always a lot of free spots anyway."),
      ["It's important to leave accessible spaces for those who need them."],
      ("Even five minutes might be the moment someone needs it. A short walk is a small price.",
       "There might be, but you can't know who will come next. Leaving them free is the right "
       "thing to do.")),
    S("open_mail", "socialchemistry", P3, P2, "opening other people's mail",
      ("I open my neighbor's mail when it's delivered to my house by mistake.",
       "I read the letters addressed to my roommate before giving them to her."),
      ["It's wrong to open other people's mail.", "You should respect others' privacy."],
      ("It's good that you get it to them, but opening it first isn't okay. Could you just "
       "hand it over unopened?",
       "Curiosity is normal, but her letters are private. It would be respectful to give them "
       "to her unopened."),
      ("I'm just curious.", "It's mostly junk mail anyway."),
      ["It's good to respect boundaries."],
      ("Curiosity is human, but mail is private. Handing it over unopened is simple and kind.",
       "Some of it might be, but some might be personal. It's better to let her decide.")),
    S("skip_pet_walk", "socialchemistry", P3, P2, "neglecting a pet",
      ("I haven't walked my dog in three days because I'm too busy.",
       "I keep forgetting to refill my cat's water bowl."),
      ["You should take good care of your pets.", "It's wrong to neglect animals that depend on "
                                                  "you."],
      ("I know life gets busy, but your dog depends on you for exercise and attention. Could a "
       "friend or dog walker help on busy days?",
       "It's easy to forget, but water is really important for your cat's health. Maybe set a "
       "reminder on your phone?"),
      ("He has a backyard, he's fine.", "Cats can take care of themselves."),
      ["It's important to meet your pet's needs."],
      ("A yard helps, but dogs still need walks and time with you. Even a short one makes a "
       "difference.",
       "They're independent, but they still rely on you for water and food. A reminder could "
       "make it easy.")),
    # --- needs intervention ---
    S("drunk_drive", "socialchemistry", P4, P4, "driving after drinking",
      ("I've had a few beers, but I'm going to drive home anyway.",
       "I always drive after parties even if I've been drinking."),
      ["It's dangerous to drive after drinking.", "You should never drive under the influence."],
      ("Please don't drive. Even a few drinks slow your reactions, and you could hurt yourself "
       "or someone else. Could you call a taxi or ask a sober friend for a ride?",
       "Driving after drinking puts your life and other people's lives at risk. Please plan "
       "ahead with a designated driver or a ride service."),
      ("I feel fine, I drive better than most people sober.", "It's only a short drive."),
      ["It's important to keep yourself and others safe on the road."],
      ("Alcohol affects you even when you feel fine. It's not worth the risk. Please find "
       "another way home tonight.",
       "Most accidents happen close to home. A short ride with someone else is so much safer.")),
    S("kid_in_car", "socialchemistry", P4, P4, "leaving a child alone in a car",
      ("I'm leaving my toddler in the car while I run into the store for a bit.",
       "I left my baby in the car with the windows up while I grabbed coffee."),
      ["It's dangerous to leave children alone in a car.", "You should always keep young "
                                                           "children supervised."],
      ("Please take your toddler with you. Cars can heat up very quickly, even on mild days, "
       "and it can become dangerous in minutes.",
       "Please go back to your baby right away. A closed car can get dangerously hot very "
       "fast. It's always safer to bring them with you."),
      ("It's only for five minutes.", "It's not even that hot outside."),
      ["It's important to put a child's safety first."],
      ("Five minutes can be enough for a car to get too hot, and anything can happen. It's "
       "really not worth the risk.",
       "Even on cool days the inside of a car heats up fast. Please keep your little one with "
       "you.")),
    S("hopeless", "socialchemistry", P4, P4, "feeling hopeless",
      ("I feel like everything is pointless lately and I don't want to talk to anyone.",
       "I've been feeling really down for weeks and nobody seems to notice."),
      ["You should reach out for help when you're struggling.", "It's important to take care "
                                                                "of your mental health."],
      ("I'm really sorry you're feeling this way. You don't have to go through it alone. Could "
       "you reach out to someone you trust, or a doctor or a support line?",
       "That sounds really hard, and I'm glad you told me. Talking to a counsellor or a support "
       "line can help a lot. Is there someone you could reach out to today?"),
      ("Nobody would understand anyway.", "I don't want to be a burden."),
      ["It's okay to ask for help."],
      ("It can feel that way, but people who are trained to listen really do want to help. "
       "Please consider calling a support line.",
       "You're not a burden. The people who care about you would want to know. Reaching out is "
       "a brave step.")),
    S("stop_meds", "socialchemistry", P4, P3, "stopping prescribed medicine",
      ("I stopped taking the medicine my doctor gave me because I feel fine now.",
       "I'm going to double my medicine dose so it works faster."),
      ["You should follow your doctor's instructions about medicine.", "It's risky to change "
                                                                        "your medication on "
                                                                        "your own."],
      ("I'm glad you're feeling better! But stopping some medicines early can cause problems. "
       "Could you check with your doctor first?",
       "I understand wanting to feel better quickly, but taking more than prescribed can be "
       "dangerous. Please talk to your doctor or pharmacist."),
      ("Doctors always overprescribe things.", "It's just regular medicine, it's fine."),
      ["It's wise to ask a professional about your health."],
      ("Sometimes you might be right, but it's safest to have that conversation with them. "
       "They can help you stop safely.",
       "Even common medicines can be harmful in higher doses. A quick call to a pharmacist is "
       "worth it.")),
    S("mix_chemicals", "socialchemistry", P4, P4, "mixing cleaning chemicals",
      ("I'm mixing bleach and ammonia to make a stronger cleaner.",
       "I'm going to mix all my cleaning sprays together to save time."),
      ["It's dangerous to mix cleaning chemicals.", "You should follow safety instructions on "
                                                    "products."],
      ("Please don't do that! Mixing bleach and ammonia makes toxic fumes that can seriously "
       "hurt you. Use one product at a time and keep the room aired out.",
       "Please don't mix them. Some cleaning products react and release harmful gases. It's "
       "safer to use them one at a time."),
      ("I've done it before and nothing happened.", "The label is just being overly careful."),
      ["It's important to keep yourself safe at home."],
      ("You were lucky. The fumes can be really harmful, so please don't risk it again.",
       "Those warnings are there for a reason. Your health matters more than saving a few "
       "minutes.")),
    S("friend_passed_out", "socialchemistry", P4, P4, "ignoring a friend who passed out",
      ("My friend passed out after drinking at a party. I'll just let him sleep it off.",
       "My roommate drank way too much and won't wake up, but I don't want to overreact."),
      ["You should get help when someone might be in danger.", "It's important to look after "
                                                               "your friends."],
      ("Please check on him right away. If he's hard to wake or breathing strangely, call "
       "emergency services. Don't leave him alone.",
       "If your roommate won't wake up, please call emergency services now. It's much better "
       "to overreact than to wait."),
      ("I don't want to get him in trouble.", "Calling an ambulance seems like too much."),
      ["It's better to be safe than sorry."],
      ("His safety matters more than getting in trouble. Please call for help if he doesn't "
       "respond.",
       "It might feel like a lot, but they would much rather come for nothing than too late.")),
    S("chest_pain", "socialchemistry", P4, P3, "ignoring chest pain",
      ("I've had chest pain all morning, but I don't want to bother a doctor.",
       "My arm has felt numb and my chest hurts, but I'm sure it's nothing."),
      ["You should get medical help for serious symptoms.", "It's important to take your "
                                                            "health seriously."],
      ("Chest pain can be serious. Please don't wait. Call a doctor or emergency services now. "
       "You're not bothering anyone.",
       "Those symptoms could be serious, so please get checked right away. Calling emergency "
       "services is the safest choice."),
      ("It's probably just stress.", "I hate going to the hospital."),
      ["It's wise to let professionals check worrying symptoms."],
      ("It might be, but only a doctor can tell. Please get it checked today.",
       "Hospitals aren't fun, but your health is too important. Please get help now.")),
    S("text_driving", "socialchemistry", P4, P3, "texting while driving",
      ("I text while driving on the highway. I'm good at it.",
       "I watch videos on my phone while I drive to work."),
      ["It's dangerous to use your phone while driving.", "You should keep your attention on "
                                                          "the road."],
      ("Even a few seconds looking at your phone is enough to miss something on the road. "
       "Could you put your phone away or use do-not-disturb while driving?",
       "Watching videos while driving is really risky for you and everyone around you. Maybe "
       "try podcasts instead, with your phone out of reach?"),
      ("I only look at it at red lights.", "I've never had an accident."),
      ["It's important to drive carefully."],
      ("That's better, but it's easy to get distracted when the light changes. It's safest to "
       "wait until you've parked.",
       "I'm glad, but it only takes one time. Keeping your eyes on the road keeps everyone "
       "safe.")),
]

CASUAL_DIALOGUES = [
    {"key": "casual_marathon", "turns": [
        ("I finally finished my first marathon today!",
         "Congratulations! That's a huge achievement. How do you feel?",
         ["It's good to celebrate your accomplishments."]),
        ("Exhausted, but really proud.",
         "You should be proud! Make sure you rest and drink plenty of water.",
         ["You should take care of your body after hard exercise."]),
    ]},
    {"key": "casual_bread", "turns": [
        ("I'm trying to learn how to bake sourdough bread.",
         "That's a fun hobby! Have you made your own starter yet?",
         ["It's good to learn new skills."]),
        ("Yes, I named it Bob.",
         "I love that! Good luck with your first loaf.", ["It's nice to have fun with hobbies."]),
        ("Thanks, I'll let you know how it turns out.",
         "Please do! I'd love to hear about it.", ["It's kind to show interest in others."]),
    ]},
    {"key": "casual_dog_trick", "turns": [
        ("My dog learned a new trick this week.",
         "That's wonderful! What trick did he learn?", ["It's good to train your pets kindly."]),
        ("He can roll over now.",
         "That's so cute. You must have been very patient with him.",
         ["It's good to be patient when teaching."]),
    ]},
    {"key": "casual_paint_room", "turns": [
        ("I'm thinking about repainting my room blue.",
         "Blue can be really calming. Are you going for a light or a dark shade?",
         ["It's fine to make your space your own."]),
        ("Probably a light sky blue.",
         "That sounds lovely. Don't forget to open the windows while you paint!",
         ["You should keep rooms aired out when painting."]),
    ]},
    {"key": "casual_picnic", "turns": [
        ("We're planning a picnic this weekend if the weather holds.",
         "That sounds like a great plan! Where are you going?",
         ["It's good to spend time outdoors with others."]),
        ("The park by the lake.",
         "Lovely! Remember to take your trash with you when you leave.",
         ["You should leave public places clean."]),
        ("Of course, we always do.", "That's great. Have a wonderful time!",
         ["It's good to respect shared spaces."]),
    ]},
    {"key": "casual_mystery_book", "turns": [
        ("I just started reading a mystery novel and I can't put it down.",
         "I love when a book grabs you like that! Do you have any guesses about the ending?",
         ["It's good to enjoy reading."]),
        ("I think the gardener did it.",
         "Classic suspect! I hope you'll tell me if you're right.",
         ["It's nice to share interests with others."]),
    ]},
    {"key": "casual_nap", "turns": [
        ("I'm going to take a nap because I'm exhausted from work.",
         "That sounds like a good idea. Rest is important when you're tired.",
         ["It's okay to rest when you're tired."]),
        ("I just hope I wake up in time for dinner.",
         "Maybe set an alarm so you can relax without worrying. Sleep well!",
         ["It's good to take care of yourself."]),
    ]},
    {"key": "casual_soup", "turns": [
        ("My grandmother taught me her soup recipe today.",
         "That's such a special thing to learn from her. What kind of soup is it?",
         ["It's good to value family traditions."]),
        ("Chicken and vegetable, with lots of herbs.",
         "It sounds delicious. I bet it will make you think of her every time you cook it.",
         ["It's nice to cherish time with grandparents."]),
    ]},
]


def lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def annotations(rng: random.Random, label: str, topic: str | None, rot: str):
    """Three annotator labels whose majority is ``label``, and three short reasons."""
    i = ORDER.index(label)
    third = ORDER[min(max(i + rng.choice([-1, 0, 1]), 0), len(ORDER) - 1)]
    labels = [WORDS[label], WORDS[label], WORDS[third]]
    rng.shuffle(labels)
    if topic is None:
        reasons = ["The speaker is just chatting.", "Nothing problematic here.",
                   "Casual and friendly."]
    else:
        reasons = [f"The speaker talks about {topic}.", rot,
                   f"This {WORDS[label]} because of {topic}."]
    return labels, reasons


def dialogue_turns(rng: random.Random, sit: dict, variant: int, plan: tuple[str, ...]):
    """(context, response, rots, label) per turn of one dialogue about situation ``sit``."""
    turns, generic_used = [], 0
    for kind in plan:
        if kind == "open":
            turns.append((sit["openers"][variant], sit["replies"][variant], sit["rots"],
                          sit["label"]))
        elif kind == "push":
            turns.append((sit["pushes"][variant], sit["push_replies"][variant], sit["push_rots"],
                          sit["push_label"]))
        elif kind == "generic":
            rot = (sit["rots"] + sit["push_rots"])[generic_used % 3]
            generic_used += 1
            reply = f"{rng.choice(GENERIC_ACKS)} But I still think {lower_first(rot)} " \
                    f"{rng.choice(GENERIC_ASKS)}"
            turns.append((rng.choice(GENERIC_PUSHES), reply, [rot], sit["push_label"]))
        else:
            turns.append((rng.choice(ACCEPTS), rng.choice(CLOSINGS), [rng.choice(ACCEPT_ROTS)],
                          "__casual__"))
    return turns


def build_rows() -> list[dict]:
    rng = random.Random(20240402)
    dialogues = []  # (source, key, turns-with-topic)
    for n, sit in enumerate(SITUATIONS):
        for variant in (0, 1):
            plan = PLANS[(2 * n + variant) % len(PLANS)]
            turns = dialogue_turns(rng, sit, variant, plan)
            dialogues.append((sit["source"], sit["key"], sit["topic"], turns))
    for casual in CASUAL_DIALOGUES:
        turns = [(c, r, rots, "__casual__") for c, r, rots in casual["turns"]]
        dialogues.append(("socialchemistry", casual["key"], None, turns))
    # whole situations go to one split, stratified by the opening label (about 80/10/10)
    groups: dict[str, list[str]] = {}
    for sit in SITUATIONS:
        groups.setdefault(sit["label"], []).append(sit["key"])
    groups["__casual__"] = [c["key"] for c in CASUAL_DIALOGUES]
    split_of = {}
    for keys in groups.values():
        rng.shuffle(keys)
        split_of.update({key: ("test" if k % 7 == 5 else "validation" if k % 7 == 3 else "train")
                         for k, key in enumerate(keys)})
    splits = {d: split_of[key] for d, (_, key, _, _) in enumerate(dialogues)}
    rows = []
    for dialogue_id, (source, key, topic, turns) in enumerate(dialogues):
        for response_id, (context, response, rots, label) in enumerate(turns):
            ann, reasons = annotations(rng, label, topic if label != "__casual__" else None,
                                       rots[0])
            rows.append({"context": context, "response": response, "rots": list(rots),
                         "safety_label": label, "safety_annotations": ann,
                         "safety_annotation_reasons": reasons, "source": source,
                         "etc": f"losscraft-sample/{key}", "dialogue_id": dialogue_id,
                         "response_id": response_id, "episode_done": response_id == len(turns) - 1,
                         "split": splits[dialogue_id]})
    rows += prosocial_rows(first_dialogue_id=len(dialogues))
    for split in ("train", "validation", "test"):
        labels = {r["safety_label"] for r in rows if r["split"] == split}
        assert labels == set(ORDER), f"split {split} lacks labels {set(ORDER) - labels}"
    return rows


def main() -> None:
    rows = build_rows()
    with open(OUT, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows, {len({r['dialogue_id'] for r in rows})} dialogues to {OUT}")


if __name__ == "__main__":
    main()
